"""The load test's mix-up checks catch a swap, and its figures are computed right (no server needed)."""

from __future__ import annotations

from ragcache.bench.load import make_sessions
from ragcache.bench.loadreport import LoadReport, PhaseSummary, TurnResult, check, summarize


def turn(session: int, turn: int, text: str, prompt: int = 1000, cached: int = 900) -> TurnResult:
    return TurnResult(session, turn, [], text=text, prompt_tokens=prompt, cached_tokens=cached, latency_s=1.0)


def test_sessions_are_seeded_twinned_and_half_stream() -> None:
    scripts = make_sessions(6, seed=3)
    assert scripts == make_sessions(6, seed=3)
    assert [s.twin for s in scripts] == [1, 0, 3, 2, 5, 4]
    assert scripts[0].code == scripts[1].code != scripts[2].code
    assert {s.stream for s in scripts} == {True, False}
    assert scripts[0].code in scripts[0].system()
    assert make_sessions(3, seed=3)[2].twin is None


def test_clean_results_have_no_problem() -> None:
    scripts = make_sessions(4, seed=1)
    results = [
        turn(s, t, f"answer {s // 2}-{t}", prompt=1000 + 50 * t, cached=1000 + 50 * (t - 1))
        for s in range(4)
        for t in (1, 2)
    ]
    assert check(scripts, results, [], history_slack=16) == []


def test_a_swapped_answer_is_a_twin_mismatch_and_a_foreign_code() -> None:
    scripts = make_sessions(4, seed=1)
    results = [turn(s, 1, f"The code is {scripts[s].code}") for s in range(4)]
    results[0].text = f"The code is {scripts[2].code}"  # session 0 got session 2's answer
    kinds = sorted(p.kind for p in check(scripts, results, [], history_slack=16))
    assert kinds == ["foreign-code", "twin-mismatch"]


def test_a_history_not_reused_and_a_reference_mismatch_are_problems() -> None:
    scripts = make_sessions(2, seed=1)
    results = [turn(0, 1, "a", prompt=1000), turn(0, 2, "b", prompt=1100, cached=500)]
    results += [turn(1, 1, "a", prompt=1000), turn(1, 2, "b", prompt=1100, cached=997)]
    problems = check(scripts, results, [(results[2], "other")], history_slack=16)
    assert [(p.kind, p.session, p.turn) for p in problems] == [("history", 0, 2), ("reference", 1, 1)]


def test_summary_percentiles_throughput_and_ratios() -> None:
    results = [turn(0, 1, "x", prompt=100, cached=50), turn(0, 2, "y", prompt=100, cached=100)]
    results[1].latency_s = 3.0
    results.append(TurnResult(1, 1, [], error="APIConnectionError: boom"))
    summary = summarize(results, wall_s=2.0)
    assert summary.requests == 3 and summary.errors == 1 and summary.throughput_rps == 1.0
    assert summary.latency_p50_s == 1.0 and summary.latency_p99_s == 3.0
    assert summary.cached_ratio == 0.75 and summary.cached_ratio_turn2_on == 1.0
    assert summary.error_samples == ("APIConnectionError: boom",)


def test_the_speedup_of_several_rounds_is_the_median_rounds() -> None:
    """One slow phase (a busy machine) moves one round's ratio, not the reported figure."""
    ok = [turn(0, 1, "a")]

    def phase(wall: float) -> PhaseSummary:
        return summarize(ok * 8, wall)

    rounds = [(phase(40.0), phase(8.0)), (phase(90.0), phase(8.0)), (phase(40.0), phase(10.0))]
    report = LoadReport(rounds[-1][1], rounds[-1][0], [], {"sessions": 4, "turns": 2, "max_tokens": 8, "model": "m"})
    assert report.speedup == 4.0  # one round alone: its own ratio
    report.rounds = rounds
    assert report.round_speedups == [5.0, 11.25, 4.0]
    assert report.speedup == 5.0 and report.failures(None, 5.5) and not report.failures(None, 5.0)
    text = report.text()
    assert "round 2: one at a time 90.0s, concurrent 8.0s: 11.25x" in text and "median of 3 rounds" in text
    assert report.to_dict()["round_speedups"] == [5.0, 11.25, 4.0]
