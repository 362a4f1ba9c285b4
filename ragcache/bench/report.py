"""Bench output: ``results.json``, ``report.md`` and PNG plots (matplotlib, Agg).

The report puts the strategies side by side, checks the targets ragcache is
held to, and says plainly which ones a run missed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragcache.backends.base import CacheUsage
from ragcache.bench.metrics import RequestRecord, StrategySummary, cumulative_cached_ratio
from ragcache.errors import ConfigError

__all__ = ["BenchResult", "Target", "check_targets", "load_result", "write_report"]

PLOTS = ("ttft.png", "cached_ratio.png", "cost.png")


@dataclass(frozen=True)
class Target:
    """One goal of the issue, evaluated on a run."""

    name: str
    status: str  # "met" | "missed" | "n/a"
    detail: str


@dataclass
class BenchResult:
    """Everything a run produced: settings, per-strategy summaries, raw records."""

    meta: dict[str, Any]
    summaries: list[StrategySummary]
    records: list[RequestRecord]
    notes: list[str] = field(default_factory=list)

    def summary(self, strategy: str) -> StrategySummary | None:
        return next((s for s in self.summaries if s.strategy == strategy), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "summaries": [s.to_dict() for s in self.summaries],
            "targets": [t.__dict__ for t in check_targets(self)],
            "notes": self.notes,
            "records": [r.to_dict() for r in self.records],
        }


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def check_targets(result: BenchResult) -> list[Target]:
    """The issue's targets: cached ratio on first-occurrence questions, TTFT speed-up, evidence recall."""
    rc, naive, nocache = result.summary("ragcache"), result.summary("naive-rag"), result.summary("no-cache")
    if rc is None:
        return [Target("all", "n/a", "the ragcache strategy was not run")]
    return [_ratio_target(result, rc, naive), _ttft_target(rc, nocache), _recall_target(result, rc, naive)]


def _first_occurrence(result: BenchResult, strategy: str) -> StrategySummary | None:
    """``strategy``'s summary over questions not asked before (its own row when the run has no repeats)."""
    mine = [r for r in result.records if r.strategy == strategy]
    if mine and not any(r.repeat for r in mine):
        return result.summary(strategy)
    return result.summary(f"{strategy} [first]")


def _ratio_target(result: BenchResult, rc: StrategySummary, naive: StrategySummary | None) -> Target:
    name = "ragcache cached-token ratio ≥ 0.90 on first-occurrence questions"
    first = _first_occurrence(result, "ragcache")
    if first is None:
        return Target(name, "n/a", "no first-occurrence questions were measured")
    oracle = "oracle" in str(result.meta.get("warm from", "")).lower()
    naive_first = _first_occurrence(result, "naive-rag") if naive else None
    vs = f" (naive-rag: {_f(naive_first.cached_ratio)})" if naive_first else ""
    detail = f"ragcache {_f(first.cached_ratio)} over {first.requests} requests{vs}"
    detail += f"; all measured: {_f(rc.cached_ratio)}"
    if oracle:
        detail = "ORACLE (warmed from the measured questions themselves): " + detail
    return Target(name, "met" if first.cached_ratio >= 0.90 else "missed", detail)


def _ttft_target(rc: StrategySummary, nocache: StrategySummary | None) -> Target:
    if nocache is None:
        return Target("TTFT p50 ≤ 1/5 of no-cache", "n/a", "no-cache was not run")
    ratio = rc.ttft_p50_s / nocache.ttft_p50_s if nocache.ttft_p50_s else math.nan
    return Target(
        "TTFT p50 ≤ 1/5 of no-cache (routing included)",
        "met" if ratio <= 0.2 else "missed",
        f"ragcache {_f(rc.ttft_p50_s)} s vs no-cache {_f(nocache.ttft_p50_s)} s = {_f(ratio, 3)}x "
        f"({_f(1 / ratio if ratio else math.nan, 1)}x faster)",
    )


def _recall_target(result: BenchResult, rc: StrategySummary, naive: StrategySummary | None) -> Target:
    budget = str(result.meta.get("naive-rag budget", ""))
    how = (
        " at equal cost"
        if budget.startswith("equal cost")
        else " at equal tokens"
        if budget.startswith(("equal tokens", "matched"))
        else f" at {budget} chunk tokens"
        if budget
        else ""
    )
    name = f"evidence recall ≥ naive-rag{how}"
    if naive is None or rc.evidence_recall is None or naive.evidence_recall is None:
        return Target(name, "n/a", "needs naive-rag and gold document ids")
    return Target(
        name,
        "met" if rc.evidence_recall >= naive.evidence_recall else "missed",
        f"ragcache {_f(rc.evidence_recall)} vs naive-rag {_f(naive.evidence_recall)}",
    )


def _table(result: BenchResult) -> list[str]:
    vendors = sorted({v for s in result.summaries for v in s.cost_per_1k})
    head = [
        "strategy",
        "requests",
        "errors",
        "TTFT p50 s",
        "TTFT p95 s",
        "latency p50 s",
        "latency mean s",
        "prompt tok/req",
        "cached ratio",
        "steady ratio",
        "hit rate",
        "prefixes",
        "cache-write tok",
        "evidence recall",
        "answer F1",
        "answer contains",
    ] + [f"$ /1k {v}" for v in vendors]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in result.summaries:
        row = [
            s.strategy,
            str(s.requests),
            str(s.errors),
            _f(s.ttft_p50_s),
            _f(s.ttft_p95_s),
            _f(s.latency_p50_s),
            _f(s.latency_mean_s),
            _f(s.prompt_tokens_mean, 0),
            _f(s.cached_ratio),
            _f(s.cached_ratio_steady),
            _f(s.hit_rate),
            str(s.distinct_prefixes),
            str(s.cache_write_tokens),
            _f(s.evidence_recall),
            _f(s.answer_f1),
            _f(s.answer_contains),
        ] + [_f(s.cost_per_1k.get(v), 4) for v in vendors]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _markdown(result: BenchResult) -> str:
    meta = result.meta
    lines = [f"# ragcache bench: {meta.get('title', 'run')}", ""]
    if meta.get("command"):
        lines += ["Command:", "", "```bash", meta["command"], "```", ""]
    lines += ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in meta.items() if k not in {"command", "title"}]
    lines += ["", "## Results", "", *_table(result)]
    lines += ["", "## Targets", "", "| target | status | numbers |", "|---|---|---|"]
    lines += [f"| {t.name} | **{t.status}** | {t.detail} |" for t in check_targets(result)]
    if result.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in result.notes]]
    lines += ["", "## Plots", "", *[f"![{p}]({p})" for p in PLOTS]]
    lines += ["", "## Definitions", "", _definitions()]
    return "\n".join(lines) + "\n"


def _definitions() -> str:
    from ragcache.bench import metrics

    return (metrics.__doc__ or "").split("Definitions (the report states them too):", 1)[-1].strip()


def _plots(result: BenchResult, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    present = {r.strategy for r in result.records}  # not the [first]/[repeat] rows: they split a strategy
    names = [s.strategy for s in result.summaries if s.strategy in present]
    by_strategy = {n: [r for r in result.records if r.strategy == n and not r.error] for n in names}
    fig, ax = plt.subplots(figsize=(7, 4))
    data = [[max(r.ttft_s, 1e-4) for r in by_strategy[n]] or [math.nan] for n in names]
    ax.boxplot(data, tick_labels=names, showfliers=True)
    ax.set_yscale("log")
    ax.set_ylabel("time to first token (s, log)")
    ax.set_title("TTFT per strategy")
    fig.tight_layout()
    fig.savefig(out / "ttft.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for n in names:
        records = sorted(by_strategy[n], key=lambda r: r.index)
        ax.plot([r.index for r in records], cumulative_cached_ratio([r.usage for r in records]), label=n, marker=".")
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("request")
    ax.set_ylabel("cached-token ratio so far")
    ax.set_title("Cached-token ratio over the run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "cached_ratio.png", dpi=90)
    plt.close(fig)

    _cost_plot(result, out, plt)


def _cost_plot(result: BenchResult, out: Path, plt: Any) -> None:
    vendors = sorted({v for s in result.summaries for v in s.cost_per_1k})
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(result.summaries), 1)
    for i, s in enumerate(result.summaries):
        xs = [j + i * width for j in range(len(vendors))]
        ax.bar(xs, [s.cost_per_1k[v] for v in vendors], width=width, label=s.strategy)
    ax.set_xticks([j + width * (len(result.summaries) - 1) / 2 for j in range(len(vendors))], vendors, fontsize=8)
    ax.set_ylabel("USD per 1,000 requests")
    ax.set_title("Cost per 1,000 requests at each vendor's prices (measured usage)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "cost.png", dpi=90)
    plt.close(fig)


def write_report(result: BenchResult, out: str | Path) -> Path:
    """Write results.json, report.md and the plots into ``out``; return report.md's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    _plots(result, out)
    report = out / "report.md"
    report.write_text(_markdown(result), encoding="utf-8")
    return report


def load_result(path: str | Path) -> BenchResult:
    """Read a ``results.json`` back (to re-render a report with notes added)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = [
            RequestRecord(
                **{
                    **r,
                    "usage": CacheUsage(**r["usage"]),
                    **{k: tuple(r[k]) for k in ("evidence_doc_ids", "gold_doc_ids", "gold_answers")},
                }
            )
            for r in data["records"]
        ]
        summaries = [StrategySummary(**s) for s in data["summaries"]]
        return BenchResult(meta=data["meta"], summaries=summaries, records=records, notes=list(data["notes"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a bench results.json ({exc})") from None
