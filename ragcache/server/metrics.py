"""Prometheus metrics of the REST server, and the totals the dashboard reads.

Counters are labelled by corpus, backend and route mode (a bounded set,
docs/architecture.md, invariant 4). With several uvicorn workers, set
``PROMETHEUS_MULTIPROC_DIR`` (``ragcache serve --workers N`` does it for you):
every worker writes its samples there and ``/metrics`` and the dashboard read
the sum over all workers, so no number depends on which worker answered.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from ragcache.app import Answer

__all__ = ["TTFT_BUCKETS", "MetricsSnapshot", "ServerMetrics", "quantile_from_buckets"]

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_LABELS = ("corpus", "backend", "route")
_TOKEN_COUNTERS = ("prompt_tokens", "cached_tokens", "cache_write_tokens", "output_tokens")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass
class MetricsSnapshot:
    """Totals summed over labels (and workers) at one moment."""

    t: float
    requests: float = 0.0
    hits: float = 0.0
    prompt_tokens: float = 0.0
    cached_tokens: float = 0.0
    cache_write_tokens: float = 0.0
    output_tokens: float = 0.0
    cost_usd: float = 0.0
    saved_usd: float = 0.0
    errors: float = 0.0
    cancelled: float = 0.0
    in_progress: float = 0.0
    warm_misses: float = 0.0
    queue_depth: float = 0.0
    ttft_buckets: dict[float, float] = field(default_factory=dict)
    ttft_count: float = 0.0
    ttft_sum: float = 0.0
    by_route: dict[tuple[str, str, str], dict[str, float]] = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        """Share of answers whose prompt reused cached tokens."""
        return self.hits / self.requests if self.requests else 0.0

    @property
    def cached_ratio(self) -> float:
        """Share of prompt tokens served from the cache."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def point(self) -> dict[str, float]:
        return {
            "t": round(self.t, 3),
            "requests": self.requests,
            "hit_rate": round(self.hit_rate, 4),
            "cached_ratio": round(self.cached_ratio, 4),
            "saved_usd": self.saved_usd,
        }


class ServerMetrics:
    """The server's own metrics; one instance per app (per worker process)."""

    def __init__(self, history_points: int = 720) -> None:
        self.multiprocess = multiprocess_dir() is not None
        # In multiprocess mode values live in files, so no registry is needed to
        # create them; otherwise a private registry keeps several apps apart.
        self._registry = None if self.multiprocess else CollectorRegistry()
        reg = self._registry
        self.requests = Counter("ragcache_requests", "Answers served", _LABELS, registry=reg)
        self.hits = Counter("ragcache_cache_hits", "Answers whose prompt reused cached tokens", _LABELS, registry=reg)
        self.tokens = {
            name: Counter(f"ragcache_{name}", f"{name.replace('_', ' ').capitalize()}", _LABELS, registry=reg)
            for name in _TOKEN_COUNTERS
        }
        self.cost = Counter("ragcache_cost_usd", "Cost of the answers (USD)", _LABELS, registry=reg)
        self.saved = Counter(
            "ragcache_saved_usd", "Saved by the prompt cache vs. no cache (USD)", _LABELS, registry=reg
        )
        self.ttft = Histogram(
            "ragcache_ttft_seconds", "Time to first token", _LABELS, buckets=TTFT_BUCKETS, registry=reg
        )
        self.latency = Histogram(
            "ragcache_latency_seconds", "Answer latency", _LABELS, buckets=TTFT_BUCKETS, registry=reg
        )
        self.http = Counter("ragcache_http_requests", "HTTP responses", ("path", "status"), registry=reg)
        self.errors = Counter("ragcache_errors", "Requests answered with an error", ("path", "code"), registry=reg)
        self.in_progress = Gauge(
            "ragcache_generations_in_progress", "Generations running now", multiprocess_mode="livesum", registry=reg
        )
        self.cancelled = Counter(
            "ragcache_generations_cancelled", "Generations stopped early", ("reason",), registry=reg
        )
        self.compactions = Counter(
            "ragcache_conversation_compactions",
            "Conversation turns whose history was compacted to fit the window (the stable prefix stays cached)",
            ("corpus", "backend", "kind"),
            registry=reg,
        )
        self.rederived = Counter(
            "ragcache_conversation_rederived_turns",
            "Earlier turns of stateless chats that no conversation store held, re-derived from their words",
            ("corpus", "backend"),
            registry=reg,
        )
        self.warm_misses = Counter(
            "ragcache_warm_prefix_misses",
            "Answers on a warmed prefix that read fewer cached tokens than its warm-up proved (a cache write again)",
            _LABELS,
            registry=reg,
        )
        self.queue_depth = Gauge(
            "ragcache_queue_depth",
            "Requests waiting for the engine (Backend.queue_depth())",
            ("corpus", "backend"),
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.build_info = Gauge(
            "ragcache_corpus_build_info",
            "The build each corpus is served from (1 for its fingerprint; a reload moves it)",
            ("corpus", "fingerprint"),
            multiprocess_mode="liveall",
            registry=reg,
        )
        self.reloads = Counter(
            "ragcache_corpus_reloads",
            "Rebuilt corpora loaded without a restart (outcome: reloaded, failed)",
            ("corpus", "outcome"),
            registry=reg,
        )
        self._queues: Callable[[], Iterable[tuple[str, str, int]]] | None = None
        self.history: deque[dict[str, float]] = deque(maxlen=history_points)

    # --- recording ------------------------------------------------------------

    def observe_answer(self, corpus: str, backend: str, answer: Answer) -> None:
        """Count one finished answer (an unpriced one adds no cost and no saving)."""
        labels = (corpus, backend, answer.route.mode if answer.route is not None else "none")
        usage = answer.usage
        self.requests.labels(*labels).inc()
        if usage.cached_tokens > 0:
            self.hits.labels(*labels).inc()
        self.tokens["prompt_tokens"].labels(*labels).inc(usage.input_tokens)
        self.tokens["cached_tokens"].labels(*labels).inc(usage.cached_tokens)
        self.tokens["cache_write_tokens"].labels(*labels).inc(usage.cache_write_tokens)
        self.tokens["output_tokens"].labels(*labels).inc(usage.output_tokens)
        if answer.cost is not None:
            self.cost.labels(*labels).inc(max(answer.cost.usd, 0.0))
            self.saved.labels(*labels).inc(max(answer.cost.saved_usd, 0.0))  # a counter cannot fall
        self.ttft.labels(*labels).observe(max(answer.ttft_s, 0.0))
        self.latency.labels(*labels).observe(max(answer.latency_s, 0.0))
        self._observe_turn(corpus, backend, answer)
        self.sample_due()

    def _observe_turn(self, corpus: str, backend: str, answer: Answer) -> None:
        """Compactions (kind: excerpts only, or whole turns too) and re-derived earlier turns."""
        turn = answer.turn
        if turn is None:
            return
        if turn.compaction is not None:
            self.compactions.labels(corpus, backend, "turns" if turn.compaction.dropped_turns else "excerpts").inc()
        if turn.rederived:
            self.rederived.labels(corpus, backend).inc(turn.rederived)

    def observe_warm_miss(self, corpus: str, backend: str, route: str) -> None:
        """A warmed prefix was answered with fewer cached tokens than its warm-up proved."""
        self.warm_misses.labels(corpus, backend, route).inc()

    def observe_build(self, corpus: str, fingerprint: str, previous: str | None = None) -> None:
        """``corpus`` is now served from ``fingerprint`` (after ``previous``: a reload)."""
        if previous is not None:
            self.build_info.labels(corpus, previous).set(0)
            if not self.multiprocess:  # the files of multiprocess mode keep the series: 0 says it is gone
                self.build_info.remove(corpus, previous)
            self.reloads.labels(corpus, "reloaded").inc()
        self.build_info.labels(corpus, fingerprint).set(1)

    def observe_reload_failure(self, corpus: str) -> None:
        self.reloads.labels(corpus, "failed").inc()

    def watch_queues(self, depths: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        """Read ``(corpus, backend, depth)`` rows from ``depths`` whenever metrics are read."""
        self._queues = depths
        self.refresh_queues()

    def refresh_queues(self) -> None:
        """Set ``ragcache_queue_depth`` now (each worker sets its own engine's; livesum adds them)."""
        if self._queues is None:
            return
        for corpus, backend, depth in self._queues():
            self.queue_depth.labels(corpus, backend).set(max(int(depth), 0))

    def observe_http(self, path: str, status: int) -> None:
        self.http.labels(path, str(status)).inc()

    def observe_error(self, path: str, code: str) -> None:
        self.errors.labels(path, code).inc()

    # --- reading --------------------------------------------------------------

    def registry(self) -> CollectorRegistry:
        """The registry to read: all workers' files in multiprocess mode."""
        if self._registry is not None:
            return self._registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        self.refresh_queues()
        return generate_latest(self.registry()), CONTENT_TYPE_LATEST

    def snapshot(self) -> MetricsSnapshot:
        """Sum every sample over its labels."""
        self.refresh_queues()
        snap = MetricsSnapshot(t=time.time())
        for family in self.registry().collect():
            for sample in family.samples:
                _add_sample(snap, sample.name, sample.labels, sample.value)
        return snap

    def sample_due(self, min_interval_s: float = 1.0) -> None:
        """:meth:`sample` unless the history's last point is younger than ``min_interval_s``: reading
        every metric back was the largest bookkeeping cost of a request under load (docs/bench/gpu/README.md
        §5), so answers add at most one point a second; the dashboard samples afresh when it reads."""
        if not self.history or time.time() - self.history[-1]["t"] >= min_interval_s:
            self.sample(min_interval_s)

    def sample(self, min_interval_s: float = 1.0) -> MetricsSnapshot:
        """Append a point to the in-process history (one per ``min_interval_s``)."""
        snap = self.snapshot()
        point = snap.point()
        if self.history and point["t"] - self.history[-1]["t"] < min_interval_s:
            self.history[-1] = point
        else:
            self.history.append(point)
        return snap


_SIMPLE = {
    "ragcache_requests_total": "requests",
    "ragcache_cache_hits_total": "hits",
    "ragcache_cost_usd_total": "cost_usd",
    "ragcache_saved_usd_total": "saved_usd",
    "ragcache_errors_total": "errors",
    "ragcache_generations_cancelled_total": "cancelled",
    "ragcache_generations_in_progress": "in_progress",
    "ragcache_warm_prefix_misses_total": "warm_misses",
    "ragcache_queue_depth": "queue_depth",
    **{f"ragcache_{name}_total": name for name in _TOKEN_COUNTERS},
}


def _add_sample(snap: MetricsSnapshot, name: str, labels: dict[str, str], value: float) -> None:
    if name in _SIMPLE:
        attr = _SIMPLE[name]
        setattr(snap, attr, getattr(snap, attr) + value)
        if "route" in labels and attr in {"requests", "hits", "prompt_tokens", "cached_tokens", "saved_usd"}:
            key = (labels["corpus"], labels["backend"], labels["route"])
            row = snap.by_route.setdefault(key, {})
            row[attr] = row.get(attr, 0.0) + value
    elif name == "ragcache_ttft_seconds_bucket":
        le = float(labels["le"])
        snap.ttft_buckets[le] = snap.ttft_buckets.get(le, 0.0) + value
    elif name == "ragcache_ttft_seconds_count":
        snap.ttft_count += value
    elif name == "ragcache_ttft_seconds_sum":
        snap.ttft_sum += value


def quantile_from_buckets(q: float, buckets: dict[float, float]) -> float | None:
    """Estimate a quantile from cumulative histogram buckets (as PromQL does)."""
    edges = sorted(buckets)
    if not edges or buckets[edges[-1]] <= 0:
        return None
    total = buckets[edges[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= rank:
            if edge == float("inf"):
                return lower
            span = count - below
            return lower + (edge - lower) * ((rank - below) / span if span else 1.0)
        lower, below = edge, count
    return lower


def snapshot_dict(snap: MetricsSnapshot) -> dict[str, Any]:
    """A JSON-ready view of a snapshot for the dashboard."""
    data = {k: v for k, v in asdict(snap).items() if k not in {"ttft_buckets", "by_route"}}
    edges = sorted(snap.ttft_buckets)
    previous = 0.0
    histogram = []
    for edge in edges:
        count = snap.ttft_buckets[edge]
        histogram.append({"le": "+Inf" if edge == float("inf") else edge, "count": count - previous})
        previous = count
    data.update(
        hit_rate=snap.hit_rate,
        cached_ratio=snap.cached_ratio,
        ttft_histogram=histogram,
        ttft_p50=quantile_from_buckets(0.5, snap.ttft_buckets),
        ttft_p95=quantile_from_buckets(0.95, snap.ttft_buckets),
        by_route=[{"corpus": c, "backend": b, "route": r, **row} for (c, b, r), row in sorted(snap.by_route.items())],
    )
    return data
