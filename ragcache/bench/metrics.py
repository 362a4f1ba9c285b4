"""Bench metrics: plain arithmetic on per-request records, no engine needed.

Definitions (the report states them too):

- *cached-token ratio*: cached prompt tokens / all prompt tokens, summed over
  requests (a token-weighted ratio, not a mean of per-request ratios);
  *steady* drops the first ``warmup_requests`` requests of the run.
- *request hit rate*: share of requests with at least one cached prompt token.
- *distinct prefixes*: number of different stable-prefix fingerprints sent.
- *cost per 1,000 requests*: each vendor's prices applied to every measured
  usage, averaged, times 1,000 (one-time warm-up cost reported apart).
- *evidence recall*: per request with gold documents, the share of them that
  were inside the prompt (stable blocks or snippets); averaged.
- *answer F1*: SQuAD-style token F1 of the answer against the best gold answer
  (lower-cased, punctuation and articles removed); averaged over requests with
  gold answers. *answer contains*: share of answers containing a gold answer.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ragcache.backends.base import CacheUsage

__all__ = [
    "PriceFn",
    "RequestRecord",
    "StrategySummary",
    "answer_contains",
    "answer_f1",
    "cached_ratio",
    "cumulative_cached_ratio",
    "evidence_recall",
    "percentile",
    "summarize",
]

PriceFn = Callable[[CacheUsage], float]


@dataclass(frozen=True)
class RequestRecord:
    """What one strategy did for one workload request."""

    strategy: str
    index: int
    session: str
    turn: int
    usage: CacheUsage
    ttft_s: float
    latency_s: float
    prefix: str = ""
    route: str = ""
    evidence_doc_ids: tuple[str, ...] = ()
    gold_doc_ids: tuple[str, ...] = ()
    gold_answers: tuple[str, ...] = ()
    answer: str = ""
    error: str = ""
    repeat: bool = False  # the question was asked before (in the warm-up part or earlier in the run)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"] = self.usage.to_dict()
        data["evidence_doc_ids"] = list(self.evidence_doc_ids)
        data["gold_doc_ids"] = list(self.gold_doc_ids)
        data["gold_answers"] = list(self.gold_answers)
        return data


@dataclass(frozen=True)
class StrategySummary:
    """One strategy's numbers over a run."""

    strategy: str
    requests: int
    errors: int
    ttft_p50_s: float
    ttft_p95_s: float
    latency_p50_s: float
    latency_mean_s: float
    prompt_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    output_tokens: int
    prompt_tokens_mean: float
    cached_ratio: float
    cached_ratio_steady: float
    hit_rate: float
    distinct_prefixes: int
    cost_per_1k: dict[str, float] = field(default_factory=dict)
    warmup_usage: dict[str, int] = field(default_factory=dict)
    warmup_cost: dict[str, float] = field(default_factory=dict)
    evidence_recall: float | None = None
    answer_f1: float | None = None
    answer_contains: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cached_ratio(usages: Sequence[CacheUsage]) -> float:
    """Token-weighted cached ratio of ``usages`` (0.0 when nothing was sent)."""
    total = sum(u.input_tokens for u in usages)
    return sum(u.cached_tokens for u in usages) / total if total else 0.0


def cumulative_cached_ratio(usages: Sequence[CacheUsage]) -> list[float]:
    """The cached ratio of the run so far, after each request (for the plot)."""
    out, cached, total = [], 0, 0
    for usage in usages:
        cached += usage.cached_tokens
        total += usage.input_tokens
        out.append(cached / total if total else 0.0)
    return out


def evidence_recall(gold: Sequence[str], in_prompt: Sequence[str]) -> float | None:
    """Share of gold documents present in the prompt; None without gold."""
    if not gold:
        return None
    present = set(in_prompt)
    return sum(1 for doc in set(gold) if doc in present) / len(set(gold))


def _normalize(text: str) -> list[str]:
    text = text.lower()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def answer_f1(answer: str, golds: Sequence[str]) -> float | None:
    """Best SQuAD-style token F1 of ``answer`` against ``golds``; None without gold."""
    if not golds:
        return None
    predicted = _normalize(answer)
    best = 0.0
    for gold in golds:
        expected = _normalize(gold)
        common = sum((Counter(predicted) & Counter(expected)).values())
        if common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def answer_contains(answer: str, golds: Sequence[str]) -> float | None:
    """1.0 when the normalised answer contains a normalised gold answer; None without gold."""
    if not golds:
        return None
    haystack = " ".join(_normalize(answer))
    return 1.0 if any(" ".join(_normalize(g)) and " ".join(_normalize(g)) in haystack for g in golds) else 0.0


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _cost_per_1k(usages: Sequence[CacheUsage], prices: Mapping[str, PriceFn]) -> dict[str, float]:
    if not usages:
        return {vendor: 0.0 for vendor in prices}
    return {vendor: sum(price(u) for u in usages) / len(usages) * 1000 for vendor, price in sorted(prices.items())}


def summarize(
    strategy: str,
    records: Sequence[RequestRecord],
    prices: Mapping[str, PriceFn] | None = None,
    *,
    warmup_requests: int = 0,
    warmup: CacheUsage | None = None,
) -> StrategySummary:
    """Aggregate one strategy's records; failed requests count only as errors."""
    prices = prices or {}
    ok = [r for r in records if not r.error]
    usages = [r.usage for r in ok]
    ttfts = [r.ttft_s for r in ok]
    latencies = [r.latency_s for r in ok]
    steady = [r.usage for r in ok if r.index >= warmup_requests]
    warmup = warmup or CacheUsage()
    return StrategySummary(
        strategy=strategy,
        requests=len(records),
        errors=len(records) - len(ok),
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p95_s=percentile(ttfts, 95),
        latency_p50_s=percentile(latencies, 50),
        latency_mean_s=sum(latencies) / len(latencies) if latencies else math.nan,
        prompt_tokens=sum(u.input_tokens for u in usages),
        cached_tokens=sum(u.cached_tokens for u in usages),
        cache_write_tokens=sum(u.cache_write_tokens for u in usages),
        output_tokens=sum(u.output_tokens for u in usages),
        prompt_tokens_mean=sum(u.input_tokens for u in usages) / len(usages) if usages else 0.0,
        cached_ratio=cached_ratio(usages),
        cached_ratio_steady=cached_ratio(steady),
        hit_rate=sum(1 for u in usages if u.cached_tokens > 0) / len(usages) if usages else 0.0,
        distinct_prefixes=len({r.prefix for r in ok if r.prefix}),
        cost_per_1k=_cost_per_1k(usages, prices),
        warmup_usage=warmup.to_dict(),
        warmup_cost={vendor: price(warmup) for vendor, price in sorted(prices.items())},
        evidence_recall=_mean([evidence_recall(r.gold_doc_ids, r.evidence_doc_ids) for r in ok]),
        answer_f1=_mean([answer_f1(r.answer, r.gold_answers) for r in ok]),
        answer_contains=_mean([answer_contains(r.answer, r.gold_answers) for r in ok]),
    )
