"""One decayed counter (cache/decay.py) behind router demand and the warm set's traffic log.

Pure logic: the lazy decay is checked against the eager definition (every count multiplied
by 0.5 ** (1 / half_life) on every event), and demand and the traffic log, fed the same
events, must hold the same counts and the same order.
"""

from __future__ import annotations

import json

import pytest

from ragcache.cache.decay import DecayedCounts
from ragcache.cache.warmset import TrafficLog
from ragcache.router.runs import Demand

EVENTS = [0, 2, 2, 1, 0, 2, 3, 3, 3, 1, 2, 0, 0, 0, 3]  # run indices, in arrival order
RUNS = [("category:a",), ("category:b",), ("category:c",), ("category:d", "category:e")]


def eager(events: list[int], keys: int, half_life: float) -> list[float]:
    counts = [0.0] * keys
    for event in events:
        counts = [c * 0.5 ** (1.0 / half_life) for c in counts]
        counts[event] += 1.0
    return counts


def test_lazy_decay_equals_the_eager_definition() -> None:
    counts: DecayedCounts[int] = DecayedCounts(4.0)
    for event in EVENTS:
        counts.record(event)
    assert counts.clock == len(EVENTS)
    assert [counts.score(k) for k in range(4)] == pytest.approx(eager(EVENTS, 4, 4.0), rel=1e-12)
    counts.tick(4)  # four events counted elsewhere: everything halves
    assert [counts.score(k) for k in range(4)] == pytest.approx([c / 2 for c in eager(EVENTS, 4, 4.0)], rel=1e-12)
    assert counts.score(9) == 0.0 and list(counts) == [0, 2, 1, 3]


def test_demand_and_traffic_log_count_alike() -> None:
    demand, traffic = Demand(len(RUNS), half_life=4.0), TrafficLog("fp", half_life_requests=4.0)
    for event in EVENTS:
        demand.observe(event)
        traffic.record(RUNS[event])
    assert demand.clock == traffic.requests == len(EVENTS)
    assert list(demand.counts) == pytest.approx([traffic.score(run) for run in RUNS], rel=1e-12)
    assert [RUNS[i] for i in demand.ranked()] == traffic.ranked()
    shared = Demand.from_dict(json.loads(json.dumps(demand.to_dict())))  # saved and loaded elsewhere
    assert shared.clock == demand.clock and shared.ranked() == demand.ranked()
    assert list(shared.counts) == pytest.approx(list(demand.counts), abs=1e-6)
    loaded = TrafficLog.from_json(traffic.to_json(), "fp", 4.0)
    assert loaded.requests == traffic.requests and loaded.ranked() == traffic.ranked()
