"""The load test end to end against the real ``ragcache serve`` (local backend, corpora/small).

A small run (4 sessions x 2 turns) through the official openai SDK: no
errors, no mixed-up answer, the history reused from turn 2 on, and a report
with every figure the docs quote.
"""

from __future__ import annotations

import json
from pathlib import Path

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
