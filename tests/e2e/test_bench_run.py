"""A tiny end-to-end bench: corpora/small, the real local model, the real CLI.

Four requests: ragcache warms from the routes of the first half (not measured)
and the second half goes through all four strategies; checks the files exist
and the numbers are sane (ragcache reuses its prefix, no-cache never does).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QA = [
    {
        "question": "Does SQLite need a separate server process?",
        "gold_doc_ids": ["overview/serverless.html"],
        "answers": ["No"],
    },
    {
        "question": "Which storage classes does SQLite use?",
        "gold_doc_ids": ["datatypes/storage-classes.md"],
        "answers": ["NULL, INTEGER, REAL, TEXT and BLOB"],
    },
    {
        "question": "How do I create an AUTOINCREMENT field?",
        "gold_doc_ids": ["faq/autoincrement.md"],
        "answers": ["INTEGER PRIMARY KEY"],
    },
    {
        "question": "Can several processes open the same database at once?",
        "gold_doc_ids": ["faq/concurrency.md"],
        "answers": ["Yes"],
    },
]


def ragcache(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ragcache.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bench")
    build = tmp / "build"
    done = ragcache("build", str(ROOT / "corpora" / "small"), "--out", str(build), cwd=tmp)
    assert done.returncode == 0, done.stderr
    config = tmp / "bench.yaml"
    config.write_text(
        f"corpus: {ROOT / 'corpora' / 'small'}\nbuild_dir: {build}\n"
        "backend: {kind: local}\ncache: {kv_budget_mb: 512}\n",
        encoding="utf-8",
    )
    qa = tmp / "qa.jsonl"
    qa.write_text("".join(json.dumps(row) + "\n" for row in QA), encoding="utf-8")
    done = ragcache(
        "bench",
        "make-workload",
        "--qa",
        str(qa),
        "--out",
        "w.jsonl",
        "-n",
        "4",
        "--seed",
        "1",
        "--corpus",
        str(build),
        cwd=tmp,
    )
    assert done.returncode == 0, done.stderr
    done = ragcache(
        "bench",
        "--config",
        str(config),
        "--workload",
        "w.jsonl",
        "--out",
        "out",
        "--strategies",
        "ragcache,naive-rag,full,no-cache",
        "--max-tokens",
        "4",
        "--naive-budget",
        "400",
        cwd=tmp,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp / "out"


def test_bench_writes_report_results_and_plots(bench_out: Path) -> None:
    for name in ("report.md", "results.json", "ttft.png", "cached_ratio.png", "cost.png"):
        assert (bench_out / name).stat().st_size > 0, name
    assert (bench_out / "ttft.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (bench_out / "report.md").read_text(encoding="utf-8")
    assert "ragcache bench --config" in report and "## Targets" in report


def test_bench_numbers_are_sane(bench_out: Path) -> None:
    results = json.loads((bench_out / "results.json").read_text(encoding="utf-8"))
    by = {s["strategy"]: s for s in results["summaries"]}
    main = {"ragcache", "naive-rag", "full", "no-cache"}
    assert main <= set(by) and all(name.split(" [")[0] in main for name in by)
    measured = sum(1 for r in results["records"] if r["strategy"] == "ragcache")
    assert 0 < measured < 4  # the first half only warmed
    assert results["meta"]["warm from"] == "first-half"
    assert "not measured" in results["meta"]["ragcache warm-up"]
    assert "own KV store" in results["meta"]["KV budget"]
    for name in main:
        s = by[name]
        assert s["requests"] == measured and s["errors"] == 0
        assert s["ttft_p50_s"] > 0 and s["prompt_tokens"] > 0
        assert s["cost_per_1k"] and all(v >= 0 for v in s["cost_per_1k"].values())
    assert by["no-cache"]["cached_tokens"] == 0
    assert by["ragcache"]["cached_ratio"] > by["no-cache"]["cached_ratio"]
    assert by["ragcache"]["cached_ratio"] > 0.5
    assert by["ragcache"]["warmup_usage"]["input_tokens"] > 0
    assert by["full"]["evidence_recall"] == 1.0
    # no-cache sends ragcache's prompts: same prompt sizes, same evidence.
    assert by["no-cache"]["prompt_tokens"] == by["ragcache"]["prompt_tokens"]
    assert by["no-cache"]["evidence_recall"] == by["ragcache"]["evidence_recall"]
    assert len(results["records"]) == 8
