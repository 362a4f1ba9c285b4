"""Server metrics: totals, hit rate and TTFT quantiles read back from prometheus-client."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ragcache.backends.base import CacheUsage
from ragcache.cache.pricing import Cost
from ragcache.prompt import Route
from ragcache.server.metrics import ServerMetrics, quantile_from_buckets, snapshot_dict


@dataclass
class _Answer:
    usage: CacheUsage
    route: Route
    ttft_s: float
    cost: Cost | None
    latency_s: float = 1.0
    turn: object = None  # a planned conversation turn (None: no compaction to count)


def test_snapshot_sums_answers_over_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics = ServerMetrics()
    full, faq = Route("full", ("full",)), Route("blocks", ("category:faq",))
    write = Cost(usd=0.0125, uncached_usd=0.01)  # a cache write: a loss, which the counter does not subtract
    read = Cost(usd=0.01, uncached_usd=0.012)
    metrics.observe_answer("small", "local", _Answer(CacheUsage(1000, 0, 1000, 10), full, 2.0, write))
    metrics.observe_answer("small", "local", _Answer(CacheUsage(1000, 900, 0, 10), full, 0.2, read))
    metrics.observe_answer("small", "local", _Answer(CacheUsage(500, 400, 0, 10), faq, 0.1, None))  # unpriced
    snap = metrics.snapshot()
    assert (snap.requests, snap.hits, snap.prompt_tokens, snap.cached_tokens) == (3, 2, 2500, 1300)
    assert snap.hit_rate == pytest.approx(2 / 3)
    assert snap.cached_ratio == pytest.approx(1300 / 2500)
    assert snap.saved_usd == pytest.approx(0.002) and snap.cost_usd == pytest.approx(0.0225)
    data = snapshot_dict(snap)
    assert sum(b["count"] for b in data["ttft_histogram"]) == 3
    routes = {r["route"]: r for r in data["by_route"]}
    assert routes["full"]["requests"] == 2 and routes["blocks"]["cached_tokens"] == 400
    assert len(metrics.history) == 1  # three answers within a second: one point, not a read-back each
    assert metrics.sample().requests == 3  # a reader (the dashboard) samples afresh
    assert metrics.history[-1]["hit_rate"] == pytest.approx(0.6667, abs=1e-4)


def test_answers_add_a_history_point_once_the_last_is_a_second_old(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading every metric back per answer was the worker's largest bookkeeping cost under load."""
    import ragcache.server.metrics as module

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    now = [1000.0]
    monkeypatch.setattr(module.time, "time", lambda: now[0])
    metrics = ServerMetrics()
    answer = _Answer(CacheUsage(1000, 900, 0, 10), Route("full", ("full",)), 0.2, None)
    metrics.observe_answer("small", "local", answer)
    now[0] += 0.5
    metrics.observe_answer("small", "local", answer)
    assert [p["t"] for p in metrics.history] == [1000.0]  # not read back half a second later
    now[0] += 0.6
    metrics.observe_answer("small", "local", answer)
    assert [p["t"] for p in metrics.history] == [1000.0, 1001.1]
    assert metrics.history[-1]["requests"] == 3


def test_two_apps_in_one_process_keep_separate_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    first, second = ServerMetrics(), ServerMetrics()
    first.observe_http("/v1/models", 200)
    assert b'ragcache_http_requests_total{path="/v1/models",status="200"} 1.0' in first.exposition()[0]
    assert b"/v1/models" not in second.exposition()[0]


def test_quantiles_interpolate_within_buckets() -> None:
    buckets = {0.1: 0.0, 0.5: 10.0, 1.0: 20.0, float("inf"): 20.0}
    assert quantile_from_buckets(0.5, buckets) == pytest.approx(0.5)
    assert quantile_from_buckets(0.25, buckets) == pytest.approx(0.3)
    assert quantile_from_buckets(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
