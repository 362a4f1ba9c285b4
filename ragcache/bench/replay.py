"""Replay a workload through several strategies, interleaved request by request.

For request *i* every strategy answers before request *i+1* starts, in an order
rotated by *i*, so machine drift (other load, thermal, page cache) hits all
strategies alike. Each strategy keeps its own conversation history, so a
session's later turns carry that strategy's own earlier answers. Ctrl-C during
the measured part ends the replay with the requests every strategy answered
(``Replay.interrupted``), so a long run still leaves comparable partial results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ragcache.backends.base import CacheUsage
from ragcache.bench.metrics import RequestRecord
from ragcache.bench.strategies import Strategy
from ragcache.bench.workload import WorkloadItem
from ragcache.errors import BackendError
from ragcache.prompt import Message

__all__ = ["Replay", "replay"]

ProgressFn = Callable[[str, int], None]  # (strategy that just answered, requests finished)


@dataclass
class Replay:
    """Raw output of a replay: records in run order, warm-up usage and time per strategy."""

    records: list[RequestRecord] = field(default_factory=list)
    warmup: dict[str, CacheUsage] = field(default_factory=dict)
    warmup_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    interrupted: bool = False  # Ctrl-C: ``records`` hold the whole requests before it (every strategy answered)


def _wait_for(arrival_s: float, started: float, time_scale: float) -> None:
    if time_scale <= 0:
        return
    delay = started + arrival_s * time_scale - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def _one(
    strategy: Strategy, item: WorkloadItem, index: int, history: tuple[Message, ...], repeat: bool
) -> RequestRecord:
    base = {
        "strategy": strategy.name,
        "index": index,
        "session": item.session,
        "turn": item.turn,
        "gold_doc_ids": item.gold_doc_ids,
        "gold_answers": item.gold_answers,
        "repeat": repeat,
    }
    try:
        out = strategy.answer(item, index, history)
    except BackendError as exc:
        return RequestRecord(
            usage=CacheUsage(), ttft_s=0.0, latency_s=0.0, error=f"{type(exc).__name__}: {exc}", **base
        )
    return RequestRecord(
        usage=out.usage,
        ttft_s=out.ttft_s,
        latency_s=out.latency_s,
        prefix=out.prefix,
        route=out.route,
        evidence_doc_ids=out.evidence_doc_ids,
        answer=out.text,
        **base,
    )


def replay(
    strategies: Sequence[Strategy],
    items: Sequence[WorkloadItem],
    *,
    time_scale: float = 0.0,
    progress: ProgressFn | None = None,
    warm_items: Sequence[WorkloadItem] | None = None,
) -> Replay:
    """Warm every strategy from ``warm_items`` (default: ``items``), then answer ``items`` with each, interleaved.

    ``time_scale`` > 0 honours arrival offsets (1.0 = real time, 0.1 = ten times
    faster); 0 sends each request as soon as the previous one finished. A
    record is a *repeat* when its question was asked before, in the warm-up
    items or earlier in ``items``.
    """
    result = Replay()
    warm_items = items if warm_items is None else warm_items
    for strategy in strategies:
        began = time.perf_counter()
        result.warmup[strategy.name] = strategy.warm(warm_items)
        result.warmup_s[strategy.name] = time.perf_counter() - began
    histories: dict[tuple[str, str], list[Message]] = {}
    seen = {_normal(i.question) for i in warm_items} if warm_items is not items else set()
    started, index = time.perf_counter(), 0
    try:
        for index, item in enumerate(items):
            repeat = _normal(item.question) in seen
            seen.add(_normal(item.question))
            _wait_for(item.arrival_s, started, time_scale)
            shift = index % len(strategies)
            for strategy in [*strategies[shift:], *strategies[:shift]]:
                key = (strategy.name, item.session)
                if item.turn == 0:
                    histories[key] = []
                history = histories.setdefault(key, [])
                record = _one(strategy, item, index, tuple(history), repeat)
                result.records.append(record)
                if not record.error:
                    history += [Message("user", item.question), Message("assistant", record.answer)]
                if progress is not None:
                    progress(strategy.name, index)
    except KeyboardInterrupt:
        result.records = [r for r in result.records if r.index < index]  # a half-answered request would skew
        if not result.records:
            raise  # nothing whole to report
        result.interrupted = True
    result.wall_s = time.perf_counter() - started
    return result


def _normal(question: str) -> str:
    return " ".join(question.lower().split())
