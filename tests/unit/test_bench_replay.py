"""Replay logic: interleaving order, per-strategy session history, error records.

The strategies here are scripted stand-ins (pure logic under test); the real
engines are exercised by tests/e2e/test_bench_run.py.
"""

from __future__ import annotations

from ragcache.backends.base import CacheUsage
from ragcache.bench.replay import replay
from ragcache.bench.strategies import Outcome, Strategy
from ragcache.bench.workload import WorkloadItem
from ragcache.errors import BackendUnavailableError
from ragcache.prompt import Message


class Scripted(Strategy):
    def __init__(self, name: str, calls: list, fail_on: int | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.calls = calls
        self.fail_on = fail_on

    def warm(self, items: object) -> CacheUsage:
        return CacheUsage(input_tokens=10, cache_write_tokens=10)

    def answer(self, item: WorkloadItem, index: int, history: tuple[Message, ...]) -> Outcome:
        self.calls.append((self.name, index, len(history)))
        if index == self.fail_on:
            raise BackendUnavailableError("engine down")
        return Outcome(
            f"{self.name} answer {index}",
            CacheUsage(input_tokens=100, cached_tokens=90),
            0.1,
            0.2,
            "p",
            "full",
            ("doc",),
        )


def test_replay_interleaves_rotates_and_keeps_histories_apart() -> None:
    items = [WorkloadItem("s0", 0, "a"), WorkloadItem("s0", 1, "b"), WorkloadItem("s1", 0, "c")]
    calls: list = []
    strategies = [Scripted("x", calls), Scripted("y", calls, fail_on=0)]
    seen: list = []
    result = replay(strategies, items, progress=lambda name, i: seen.append((name, i)))
    assert [(c[0], c[1]) for c in calls] == [("x", 0), ("y", 0), ("y", 1), ("x", 1), ("x", 2), ("y", 2)]
    # turn 1 of s0: x saw its own turn 0 (2 messages); y failed turn 0, so no history.
    assert ("x", 1, 2) in calls and ("y", 1, 0) in calls
    # s1 starts fresh.
    assert ("x", 2, 0) in calls
    assert len(seen) == 6 and result.warmup["x"].cache_write_tokens == 10
    failed = [r for r in result.records if r.error]
    assert len(failed) == 1 and failed[0].strategy == "y" and "engine down" in failed[0].error
    ok = [r for r in result.records if not r.error]
    assert all(r.answer.endswith(str(r.index)) and r.evidence_doc_ids == ("doc",) for r in ok)


def test_repeats_are_marked_against_the_warm_up_items_and_earlier_requests() -> None:
    warm = [WorkloadItem("w0", 0, "Is it fast?")]
    items = [WorkloadItem("s0", 0, "is it  FAST?"), WorkloadItem("s1", 0, "new one"), WorkloadItem("s2", 0, "New one")]
    result = replay([Scripted("x", [])], items, warm_items=warm)
    assert [r.repeat for r in result.records] == [True, False, True]


def test_first_half_split_keeps_sessions_whole_and_the_oracle_is_the_measured_part() -> None:
    import pytest

    from ragcache.bench.experiment import split_workload
    from ragcache.errors import ConfigError

    items = [
        WorkloadItem("a", 0, "1"),
        WorkloadItem("a", 1, "2"),
        WorkloadItem("a", 2, "3"),
        WorkloadItem("b", 0, "4"),
        WorkloadItem("c", 0, "5"),
    ]
    warm, measured = split_workload(items, "first-half")
    assert [i.question for i in warm] == ["1", "2", "3"] and [i.question for i in measured] == ["4", "5"]
    warm, measured = split_workload(items, "measured")
    assert warm is measured and len(measured) == 5
    with pytest.raises(ConfigError, match="two sessions"):
        split_workload(items[:3], "first-half")
    with pytest.raises(ConfigError, match="first-half, measured, none"):
        split_workload(items, "second-half")
