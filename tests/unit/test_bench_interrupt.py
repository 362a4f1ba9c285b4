"""Issue 26: Ctrl-C during a bench keeps the requests every strategy answered (partial results, no
half-answered request that would favour whichever strategy ran first). Scripted strategies: pure logic;
the real engines are exercised by tests/e2e/test_bench_run.py."""

from __future__ import annotations

import pytest

from ragcache.backends.base import CacheUsage
from ragcache.bench.replay import replay
from ragcache.bench.strategies import Outcome, Strategy
from ragcache.bench.workload import WorkloadItem
from ragcache.prompt import Message


class CtrlC(Strategy):
    """Answers until request ``stop_at``, where Ctrl-C arrives while it answers."""

    def __init__(self, name: str, stop_at: int | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.stop_at = stop_at

    def warm(self, items: object) -> CacheUsage:
        return CacheUsage()

    def answer(self, item: WorkloadItem, index: int, history: tuple[Message, ...]) -> Outcome:
        if index == self.stop_at:
            raise KeyboardInterrupt
        return Outcome("ok", CacheUsage(input_tokens=100, cached_tokens=90), 0.1, 0.2, "p", "full", ("doc",))


ITEMS = [WorkloadItem(f"s{i}", 0, f"question {i}") for i in range(5)]


def test_ctrl_c_keeps_the_whole_requests_before_it() -> None:
    result = replay([CtrlC("x"), CtrlC("y", stop_at=2)], ITEMS)  # x answered request 2, y was interrupted
    assert result.interrupted
    assert sorted({r.index for r in result.records}) == [0, 1]
    assert sorted(r.strategy for r in result.records) == ["x", "x", "y", "y"]


def test_ctrl_c_before_any_whole_request_is_not_swallowed() -> None:
    with pytest.raises(KeyboardInterrupt):
        replay([CtrlC("x", stop_at=0)], ITEMS)


def test_a_run_that_finishes_is_not_marked_interrupted() -> None:
    result = replay([CtrlC("x")], ITEMS)
    assert not result.interrupted and len(result.records) == 5
