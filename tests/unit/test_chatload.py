"""The load phase's rounds and their report (ragcache/bench/chatload.py, gpu_load.py): pure parts, no server.

The GPU run (docs/bench/gpu §5) repeats ragcache and raw in alternating order and reports the median
of the rounds' differences; these tests pin the order and the arithmetic the report's verdict rests on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcache.bench.chatload import TurnRecord, compare, median_compare, round_orders, summarize
from ragcache.bench.gpu_load import _pooled


def test_rounds_start_with_ragcache_then_alternate() -> None:
    assert round_orders(1) == [("ragcache", "raw")]
    assert round_orders(4) == [("ragcache", "raw"), ("raw", "ragcache"), ("ragcache", "raw"), ("raw", "ragcache")]
    with pytest.raises(ValueError, match="at least 1"):
        round_orders(0)


def test_the_median_of_rounds_and_its_range_decide_the_verdict() -> None:
    rounds = [
        {"throughput_ratio": 0.97, "ttft_p50_overhead_ms": 4.0, "ttft_p99_overhead_ms": 30.0},
        {"throughput_ratio": 0.90, "ttft_p50_overhead_ms": 40.0, "ttft_p99_overhead_ms": 90.0},  # one bad round
        {"throughput_ratio": 0.99, "ttft_p50_overhead_ms": -2.0, "ttft_p99_overhead_ms": 10.0},
    ]
    out = median_compare(rounds)
    assert out["rounds"] == 3
    assert out["throughput_ratio"] == 0.97 and out["throughput_ratio_range"] == [0.9, 0.99]
    assert out["ttft_p50_overhead_ms"] == 4.0 and out["ttft_p50_overhead_ms_range"] == [-2.0, 40.0]
    assert out["met"] == {"throughput": True, "ttft_p50_overhead": True}
    assert median_compare(rounds[1:2])["met"] == {"throughput": False, "ttft_p50_overhead": False}
    with pytest.raises(ValueError, match="no rounds"):
        median_compare([])


def records(ttft_s: float, cached: int) -> list[TurnRecord]:
    return [TurnRecord(s, t, "c", ttft_s=ttft_s, latency_s=2 * ttft_s, prompt_tokens=1000, cached_tokens=cached,
                       output_tokens=4) for s in range(2) for t in (1, 2)]  # fmt: skip


def test_pooled_rounds_sum_the_workers_cpu_and_compare_round_by_round() -> None:
    mine = [records(0.110, 900), records(0.130, 950)]
    raw = [records(0.100, 900), records(0.100, 950)]
    walls = {"ragcache": [2.0, 2.0], "raw": [1.0, 1.0]}
    cpu = [[0.4, 0.2], [0.6, 0.2]]  # two workers, two rounds
    out = _pooled(mine, raw, walls, cpu)
    assert out["ragcache"]["requests"] == 8 and out["raw"]["requests"] == 8
    assert out["ragcache"]["throughput_rps"] == 2.0 and out["raw"]["throughput_rps"] == 4.0  # pooled: 8 / 4 s, 8 / 2 s
    assert out["ragcache"]["worker_cpu_s"] == [1.0, 0.4]
    assert out["ragcache"]["worker_cpu_ms_per_request"] == 175.0  # 1.4 s over 8 requests
    assert [r["compare"]["ttft_p50_overhead_ms"] for r in out["per_round"]] == [10.0, 30.0]
    assert out["compare_median_of_rounds"]["ttft_p50_overhead_ms"] == 20.0
    assert out["compare"] == compare(out["ragcache"], out["raw"])
    assert out["same_prompts"] == {"turns": 4, "equal_prompt_tokens": 4}
    assert summarize(mine[0], 2.0)["cached_share_from_turn2"] == 0.9


def test_each_deployment_starts_with_an_empty_traffic_dir(tmp_path: Path) -> None:
    from ragcache.bench.gpu_load import fresh_dir

    left = tmp_path / "traffic-2w"
    left.mkdir()
    (left / "x.warm.lock").write_text("an earlier run's lock", encoding="utf-8")
    assert fresh_dir(left) == left and list(left.iterdir()) == []
    assert fresh_dir(tmp_path / "new" / "dir").is_dir()
