"""The load test end to end against the real ``ragcache serve`` (local backend, corpora/small).

A small run (4 sessions x 2 turns) through the official openai SDK: no
errors, no mixed-up answer, the history reused from turn 2 on, and a report
with every figure the docs quote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from server_harness import ServerProcess

from ragcache.bench.load import main


def test_a_small_load_run_is_clean_and_reports_its_figures(ragcache_server: ServerProcess, tmp_path: Path) -> None:
    report_path = tmp_path / "load.json"
    args = ["--url", ragcache_server.base_url, "--api-key", ragcache_server.api_key, "--sessions", "4"]
    args += ["--turns", "2", "--max-tokens", "6", "--reference", "2", "--json", str(report_path)]
    assert main([*args, "--min-cached-ratio", "0.9"]) == 0
    report = json.loads(report_path.read_text())
    concurrent = report["concurrent"]
    assert concurrent["requests"] == 8 and concurrent["errors"] == 0 and report["problems"] == []
    assert concurrent["cached_ratio_turn2_on"] >= 0.9
    assert 0 < concurrent["latency_p50_s"] <= concurrent["latency_p95_s"] <= concurrent["latency_p99_s"]
    assert concurrent["throughput_rps"] > 0 and concurrent["ttft_p50_s"] > 0  # half the sessions streamed


def test_rounds_alternate_the_two_phases_and_report_the_median(ragcache_server: ServerProcess, tmp_path: Path) -> None:
    """``--rounds 2 --compare-serial``: two one-at-a-time and two concurrent phases, new sessions each,
    every round's walls and ratio in the report, the speed-up their median."""
    report_path = tmp_path / "rounds.json"
    args = ["--url", ragcache_server.base_url, "--api-key", ragcache_server.api_key, "--sessions", "2"]
    args += ["--turns", "1", "--max-tokens", "3", "--reference", "1", "--compare-serial", "--rounds", "2"]
    assert main([*args, "--seed", "31", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert len(report["rounds"]) == 2 and len(report["round_speedups"]) == 2
    assert all(r["serial"]["requests"] == 2 and r["concurrent"]["requests"] == 2 for r in report["rounds"])
    assert all(r["serial"]["errors"] == 0 and r["concurrent"]["errors"] == 0 for r in report["rounds"])
    assert report["speedup"] == pytest.approx(sum(report["round_speedups"]) / 2)  # the median of two
    assert report["problems"] == []
