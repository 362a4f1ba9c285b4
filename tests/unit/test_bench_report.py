"""Report writing on hand-made records: files, target verdicts, JSON round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcache.backends.base import CacheUsage
from ragcache.bench.metrics import RequestRecord, summarize
from ragcache.bench.report import BenchResult, check_targets, load_result, write_report
from ragcache.errors import ConfigError


def make_result(rc_cached: int, rc_ttft: float) -> BenchResult:
    records = []
    for name, cached, ttft, docs in (
        ("ragcache", rc_cached, rc_ttft, ("a",)),
        ("naive-rag", 50, 2.0, ("b",)),
        ("no-cache", 0, 2.0, ("a",)),
    ):
        records += [
            RequestRecord(
                name,
                i,
                f"q{i}",
                0,
                CacheUsage(1000, cached, 0, 8),
                ttft,
                ttft + 1,
                prefix="p",
                evidence_doc_ids=docs,
                gold_doc_ids=("a",),
            )
            for i in range(4)
        ]
    prices = {"toy": lambda u: u.uncached_tokens / 1e6}
    summaries = [
        summarize(n, [r for r in records if r.strategy == n], prices) for n in ("ragcache", "naive-rag", "no-cache")
    ]
    return BenchResult({"title": "t", "command": "ragcache bench …"}, summaries, records, ["a note"])


def test_targets_met_and_missed() -> None:
    assert [t.status for t in check_targets(make_result(950, 0.2))] == ["met", "met", "met"]
    bad = [t.status for t in check_targets(make_result(800, 0.5))]
    assert bad == ["missed", "missed", "met"]


def test_write_report_and_round_trip(tmp_path: Path) -> None:
    result = make_result(950, 0.2)
    report = write_report(result, tmp_path)
    text = report.read_text(encoding="utf-8")
    assert "| ragcache | 4 | 0 |" in text and "**met**" in text and "- a note" in text
    for name in ("results.json", "ttft.png", "cached_ratio.png", "cost.png"):
        assert (tmp_path / name).stat().st_size > 0
    again = load_result(tmp_path / "results.json")
    assert again.summaries == result.summaries and again.records == result.records
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.json: not a bench results\.json"):
        load_result(tmp_path / "bad.json")


def _records(name: str, cached: list[int], repeats: list[bool]) -> list[RequestRecord]:
    return [
        RequestRecord(name, i, f"q{i}", 0, CacheUsage(1000, c, 0, 8), 0.1, 1.0, prefix="p", repeat=rep)
        for i, (c, rep) in enumerate(zip(cached, repeats, strict=True))
    ]


def test_cached_ratio_target_counts_first_occurrence_questions_only_and_names_an_oracle() -> None:
    from ragcache.bench.experiment import summarize_run

    records = _records("ragcache", [800, 1000, 1000], [False, True, True])  # repeats alone would pass
    result = BenchResult({"warm from": "first-half"}, summarize_run(["ragcache"], records), records)
    assert [s.strategy for s in result.summaries] == ["ragcache", "ragcache [first]", "ragcache [repeat]"]
    ratio = check_targets(result)[0]
    assert ratio.status == "missed" and "ragcache 0.800 over 1 requests" in ratio.detail
    assert "all measured: 0.933" in ratio.detail and "ORACLE" not in ratio.detail
    records = _records("ragcache", [950, 950], [False, False])
    oracle = BenchResult(
        {"warm from": "measured (oracle)", "naive-rag budget": "equal cost: …"},
        summarize_run(["ragcache"], records),
        records,
    )
    ratio = check_targets(oracle)[0]
    assert ratio.status == "met" and ratio.detail.startswith("ORACLE")
    assert check_targets(oracle)[2].name == "evidence recall ≥ naive-rag at equal cost"
