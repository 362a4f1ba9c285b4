"""Bench metric arithmetic on hand-made usage records (no engine involved)."""

from __future__ import annotations

import math

import pytest

from ragcache.backends.base import CacheUsage
from ragcache.bench.metrics import (
    RequestRecord,
    answer_contains,
    answer_f1,
    cached_ratio,
    cumulative_cached_ratio,
    evidence_recall,
    percentile,
    summarize,
)


def record(index: int, inp: int, cached: int, ttft: float, **kw: object) -> RequestRecord:
    usage = CacheUsage(input_tokens=inp, cached_tokens=cached, cache_write_tokens=kw.pop("write", 0), output_tokens=10)
    return RequestRecord(
        strategy="s", index=index, session=f"q{index}", turn=0, usage=usage, ttft_s=ttft, latency_s=ttft + 1.0, **kw
    )


def test_percentile_interpolates_like_numpy() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile([1.0, 2.0], 50) == pytest.approx(1.5)
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile(values, 101)


def test_cached_ratio_is_token_weighted() -> None:
    usages = [CacheUsage(input_tokens=1000, cached_tokens=900), CacheUsage(input_tokens=100, cached_tokens=0)]
    assert cached_ratio(usages) == pytest.approx(900 / 1100)
    assert cached_ratio([]) == 0.0
    assert cumulative_cached_ratio(usages) == pytest.approx([0.9, 900 / 1100])


def test_evidence_recall_and_answer_scores() -> None:
    assert evidence_recall(["a", "b"], ["b", "c"]) == 0.5
    assert evidence_recall(["a", "a"], ["a"]) == 1.0
    assert evidence_recall([], ["a"]) is None
    # 5 answer tokens (the article dropped, "_" split), 3 gold tokens, 3 shared: P=0.6, R=1.
    assert answer_f1("The answer is PRAGMA foreign_keys.", ["PRAGMA foreign_keys"]) == pytest.approx(0.75)
    assert answer_f1("nothing here", ["pragma"]) == 0.0
    assert answer_f1("x", []) is None
    assert answer_contains("Use PRAGMA foreign_keys = ON;", ["pragma foreign_keys"]) == 1.0
    assert answer_contains("no idea", ["pragma", "vacuum"]) == 0.0


def test_summarize_totals_percentiles_hit_rate_and_cost() -> None:
    records = [
        record(0, 1000, 0, 4.0, write=1000, prefix="p1", evidence_doc_ids=("a",), gold_doc_ids=("a",)),
        record(1, 1000, 960, 0.5, prefix="p1", evidence_doc_ids=("b",), gold_doc_ids=("a",)),
        record(2, 1200, 1100, 0.7, prefix="p2", gold_answers=("vacuum",), answer="run VACUUM"),
        record(3, 1200, 0, 0.0, error="BackendUnavailableError: down"),
    ]
    # $1 per 1k uncached input token, $0.1 per 1k cached, $2 per 1k output token.
    prices = {"toy": lambda u: (u.uncached_tokens + 0.1 * u.cached_tokens + 2 * u.output_tokens) / 1000}
    warm = CacheUsage(input_tokens=1000, cache_write_tokens=1000)
    s = summarize("s", records, prices, warmup_requests=1, warmup=warm)
    assert (s.requests, s.errors) == (4, 1)
    assert s.prompt_tokens == 3200 and s.cached_tokens == 2060 and s.cache_write_tokens == 1000
    assert s.cached_ratio == pytest.approx(2060 / 3200)
    assert s.cached_ratio_steady == pytest.approx(2060 / 2200)
    assert s.hit_rate == pytest.approx(2 / 3)
    assert s.distinct_prefixes == 2
    assert s.ttft_p50_s == pytest.approx(0.7)
    assert s.ttft_p95_s == pytest.approx(0.7 + (4.0 - 0.7) * 0.9)
    assert s.latency_mean_s == pytest.approx((5.0 + 1.5 + 1.7) / 3)
    costs = [(1000 + 20) / 1000, (40 + 96 + 20) / 1000, (100 + 110 + 20) / 1000]
    assert s.cost_per_1k["toy"] == pytest.approx(sum(costs) / 3 * 1000)
    assert s.warmup_cost["toy"] == pytest.approx(1.0)
    assert s.evidence_recall == pytest.approx(0.5)
    assert s.answer_f1 == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert s.answer_contains == 1.0


def test_summarize_empty_strategy_is_safe() -> None:
    s = summarize("none", [], {"toy": lambda u: 1.0})
    assert s.requests == 0 and s.cached_ratio == 0.0 and s.cost_per_1k == {"toy": 0.0}
    assert math.isnan(s.ttft_p50_s) and s.evidence_recall is None
