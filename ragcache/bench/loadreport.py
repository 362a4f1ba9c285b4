"""What a load test found: per-turn results, the mix-up checks, and the figures.

:func:`check` turns results into a list of :class:`Problem` (an empty list: no
answer or history was mixed up); :func:`summarize` gives a phase's latency
percentiles, throughput, errors and cached-token ratios; :class:`LoadReport`
holds both phases and says which thresholds were missed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "LoadReport",
    "PhaseSummary",
    "Problem",
    "SessionScript",
    "TurnResult",
    "check",
    "echo_rate",
    "summarize",
]


@dataclass(frozen=True)
class SessionScript:
    """One client session: its code (its marker), its twin (same messages) and whether it streams."""

    index: int
    code: str
    twin: int | None
    stream: bool

    def system(self) -> str:
        return f"Session code: {self.code}. When asked for the session code, answer with exactly {self.code}."


@dataclass
class TurnResult:
    """One request of a session: what was sent and what came back (or the error)."""

    session: int
    turn: int
    messages: list[dict[str, str]] = field(repr=False)
    text: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    ttft_s: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Problem:
    """A mixed-up answer or history: ``kind`` is foreign-code, twin-mismatch, history or reference."""

    kind: str
    session: int
    turn: int
    detail: str


def check(
    scripts: list[SessionScript],
    results: list[TurnResult],
    references: list[tuple[TurnResult, str]],
    *,
    history_slack: int,
) -> list[Problem]:
    """Every sign that a session got another session's answer or history (see ragcache.bench.load)."""
    problems: list[Problem] = []
    codes = {s.index: s.code for s in scripts}
    by_key = {(r.session, r.turn): r for r in results if r.error is None}
    for (session, turn), result in sorted(by_key.items()):
        foreign = sorted({c for c in codes.values() if c != codes[session] and c in result.text})
        if foreign:
            problems.append(Problem("foreign-code", session, turn, f"answer {result.text!r} holds {foreign}"))
        twin = scripts[session].twin
        other = by_key.get((twin, turn)) if twin is not None else None
        if other is not None and session < twin and other.text != result.text:
            problems.append(Problem("twin-mismatch", session, turn, f"{result.text!r} != twin's {other.text!r}"))
        previous = by_key.get((session, turn - 1))
        if previous is not None and result.cached_tokens < previous.prompt_tokens - history_slack:
            detail = f"cached {result.cached_tokens} of its previous prompt's {previous.prompt_tokens} tokens"
            problems.append(Problem("history", session, turn, detail))
    for result, alone in references:
        if alone != result.text:
            problems.append(Problem("reference", result.session, result.turn, f"{result.text!r} != alone {alone!r}"))
    return problems


def echo_rate(scripts: list[SessionScript], results: list[TurnResult]) -> float:
    """Share of answers that hold their own session's code."""
    ok = [r for r in results if r.error is None]
    return sum(scripts[r.session].code in r.text for r in ok) / len(ok) if ok else 0.0


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _ratio(results: list[TurnResult]) -> float:
    prompt = sum(r.prompt_tokens for r in results)
    return sum(r.cached_tokens for r in results) / prompt if prompt else 0.0


@dataclass(frozen=True)
class PhaseSummary:
    """The figures of one phase (a set of sessions run together)."""

    requests: int
    errors: int
    wall_s: float
    throughput_rps: float
    output_tokens_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    ttft_p50_s: float
    cached_ratio: float
    cached_ratio_turn2_on: float
    error_samples: tuple[str, ...] = ()


def summarize(results: list[TurnResult], wall_s: float) -> PhaseSummary:
    ok = [r for r in results if r.error is None]
    latencies = [r.latency_s for r in ok]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    return PhaseSummary(
        requests=len(results),
        errors=len(results) - len(ok),
        wall_s=wall_s,
        throughput_rps=len(ok) / wall_s if wall_s else 0.0,
        output_tokens_per_s=sum(r.completion_tokens for r in ok) / wall_s if wall_s else 0.0,
        latency_p50_s=_percentile(latencies, 50),
        latency_p95_s=_percentile(latencies, 95),
        latency_p99_s=_percentile(latencies, 99),
        ttft_p50_s=_percentile(ttfts, 50),
        cached_ratio=_ratio(ok),
        cached_ratio_turn2_on=_ratio([r for r in ok if r.turn >= 2]),
        error_samples=tuple(sorted({r.error for r in results if r.error})[:5]),
    )


def _speedup(serial: PhaseSummary | None, concurrent: PhaseSummary) -> float | None:
    """Concurrent over one-at-a-time throughput; None without a one-at-a-time phase that answered."""
    if serial is None or not serial.throughput_rps:
        return None
    return concurrent.throughput_rps / serial.throughput_rps


@dataclass
class LoadReport:
    """The concurrent phase, the optional one-at-a-time phase, the problems found and the settings."""

    concurrent: PhaseSummary
    serial: PhaseSummary | None
    problems: list[Problem]
    settings: dict[str, Any]
    echo_rate: float = 0.0  # answers holding their own session's code (informative: a 135M model often won't)
    samples: list[str] = field(default_factory=list)  # a few answers, to see what the model said
    rounds: list[tuple[PhaseSummary, PhaseSummary]] = field(default_factory=list)  # (one at a time, concurrent)

    @property
    def round_speedups(self) -> list[float]:
        """Each round's speed-up (its two phases ran back to back); a round without one is left out."""
        return [ratio for serial, concurrent in self.rounds if (ratio := _speedup(serial, concurrent)) is not None]

    @property
    def speedup(self) -> float | None:
        """The median round's speed-up: one slow phase on a shared machine moves one round, not the figure."""
        if self.rounds:
            return statistics.median(self.round_speedups) if self.round_speedups else None
        return _speedup(self.serial, self.concurrent)

    def failures(self, min_cached_ratio: float | None, min_speedup: float | None) -> list[str]:
        out = []
        for name, phase in (("concurrent", self.concurrent), ("serial", self.serial)):
            if phase is not None and phase.errors:
                out.append(f"{phase.errors} errors in the {name} phase, e.g. {list(phase.error_samples)}")
        if self.problems:
            out.append(f"{len(self.problems)} mixed-up answers or histories, e.g. {self.problems[:3]}")
        if min_cached_ratio is not None and self.concurrent.cached_ratio_turn2_on < min_cached_ratio:
            out.append(
                f"cached-token ratio from turn 2 {self.concurrent.cached_ratio_turn2_on:.3f} < {min_cached_ratio}"
            )
        if min_speedup is not None and (self.speedup or 0.0) < min_speedup:
            out.append(f"speed-up {self.speedup} < {min_speedup} (needs --compare-serial)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "concurrent": asdict(self.concurrent),
            "serial": asdict(self.serial) if self.serial else None,
            "speedup": self.speedup,
            "rounds": [{"serial": asdict(a), "concurrent": asdict(b)} for a, b in self.rounds],
            "round_speedups": self.round_speedups,
            "echo_rate": self.echo_rate,
            "samples": self.samples,
            "problems": [asdict(p) for p in self.problems],
        }

    def text(self) -> str:
        s = self.settings
        lines = [
            f"load: {s['sessions']} sessions x {s['turns']} turns, max_tokens {s['max_tokens']}, model {s['model']}"
        ]
        for name, phase in (("one at a time", self.serial), ("concurrent", self.concurrent)):
            if phase is None:
                continue
            lines.append(
                f"  {name:>13}: {phase.requests} requests in {phase.wall_s:.1f}s = {phase.throughput_rps:.2f} req/s"
                f" ({phase.output_tokens_per_s:.1f} tok/s), errors {phase.errors}; latency p50/p95/p99"
                f" {phase.latency_p50_s:.2f}/{phase.latency_p95_s:.2f}/{phase.latency_p99_s:.2f}s,"
                f" TTFT p50 {phase.ttft_p50_s:.2f}s; cached ratio {phase.cached_ratio:.3f},"
                f" from turn 2 {phase.cached_ratio_turn2_on:.3f}"
            )
        for number, (serial, concurrent) in enumerate(self.rounds, 1):
            ratio = _speedup(serial, concurrent)
            walls = f"one at a time {serial.wall_s:.1f}s, concurrent {concurrent.wall_s:.1f}s"
            lines.append(f"  round {number}: {walls}: " + (f"{ratio:.2f}x" if ratio is not None else "no speed-up"))
        if self.speedup is not None:
            median = f"median of {len(self.rounds)} rounds, " if len(self.rounds) > 1 else ""
            lines.append(f"  speed-up (concurrent / one at a time, {median}throughput): {self.speedup:.2f}x")
        lines.append(f"  answers repeating their own session code: {self.echo_rate:.0%}")
        kinds = sorted({p.kind for p in self.problems})
        lines.append(
            f"  mixed-up answers or histories: {len(self.problems)}" + (f" ({', '.join(kinds)})" if kinds else "")
        )
        return "\n".join(lines)
