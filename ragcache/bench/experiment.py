"""A whole bench experiment: config → apps → strategies → replay → summaries → report on disk.

``replay.py`` is the request-by-request part; this module wires it with the
strategies, the vendor prices and the report.

Honesty rules: ragcache is warmed from the workload's first part
(``warm_from="first-half"``, cut at a session boundary) and measured on the
rest; ``"measured"`` warms from the measured questions themselves and is
labelled an *oracle* in the report. Each strategy gets its own backend where
the cache lives in the process (the local KV store), so one cannot evict
another's prefixes; first-occurrence questions are summarised apart from
repeats (rows ``<strategy> [first]`` and ``<strategy> [repeat]``).
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ragcache.app import RagCache
from ragcache.backends.base import CacheUsage, GenerationOptions, create_backend
from ragcache.bench.metrics import PriceFn, RequestRecord, StrategySummary, summarize
from ragcache.bench.replay import ProgressFn, replay
from ragcache.bench.report import BenchResult, write_report
from ragcache.bench.strategies import RagcacheStrategy, Strategy, create_strategies
from ragcache.bench.workload import WorkloadItem
from ragcache.config import Config
from ragcache.errors import ConfigError

__all__ = [
    "PRICED_MODELS",
    "WARM_FROM",
    "BenchSettings",
    "run_bench",
    "split_workload",
    "summarize_run",
    "vendor_prices",
]

WARM_FROM = ("first-half", "measured", "none")


def split_workload(items: Sequence[WorkloadItem], warm_from: str) -> tuple[list[WorkloadItem], list[WorkloadItem]]:
    """(warm-up items, measured items): the first half cut at a session start, or the measured ones (oracle)."""
    if warm_from not in WARM_FROM:
        raise ConfigError(f"unknown --warm-from {warm_from!r}; valid: {', '.join(WARM_FROM)}")
    if warm_from == "none":
        return [], list(items)
    if warm_from == "measured":
        measured = list(items)
        return measured, measured  # the same list: repeats are counted within the measured part only
    cut = len(items) // 2
    while 0 < cut < len(items) and items[cut].turn != 0:
        cut += 1  # do not split a session between warm-up and measurement
    if cut >= len(items) or cut == 0:
        raise ConfigError(
            f"--warm-from first-half needs at least two sessions; the workload has {len(items)} "
            "requests in one (use --warm-from measured, an oracle, or a longer workload)"
        )
    return list(items[:cut]), list(items[cut:])


@dataclass(frozen=True)
class BenchSettings:
    """What the CLI (or a caller) asks of a run."""

    strategies: tuple[str, ...] = ("ragcache", "naive-rag", "full", "no-cache")
    max_tokens: int = 32
    warmup_requests: int = 0
    time_scale: float = 0.0
    naive_budget: int | None = None
    naive_match: str = "cost"
    warm: str = "traffic"
    warm_from: str = "first-half"
    command: str = ""
    title: str = ""
    workload_path: str = ""
    notes: tuple[str, ...] = ()


_NAIVE_MATCH = {
    "cost": "equal cost: per request, the default profile's read price x ragcache's stable corpus tokens "
    "(read from cache) + its tail tokens",
    "tokens": "equal tokens: per request, ragcache's corpus tokens (stable blocks + tail)",
}

PRICED_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5.1", "gpt-4o-mini")


def vendor_prices(models: Sequence[str] = PRICED_MODELS) -> dict[str, PriceFn]:
    """Each model's list prices (ragcache.cache.pricing) as a function of one measured usage."""
    from ragcache.cache.pricing import cost_at, price_for

    out: dict[str, PriceFn] = {}
    for model in models:
        price = price_for(model)
        if price is None:
            raise ConfigError(f"no price for model {model!r} in its vendor table (ragcache/backends/<vendor>/table.py)")
        out[f"{price.vendor} {model}"] = lambda usage, p=price: cost_at(usage, p).usd
    return out


def _apps(config: Config, strategies: Sequence[str]) -> tuple[RagCache, RagCache | None, dict[str, RagCache]]:
    """The main app, the uncached one (no-cache on the local store), and per strategy its own app where
    the KV cache lives in the process, so strategies cannot evict each other's prefixes."""
    app = RagCache.from_config(config)
    uncached = None
    if "no-cache" in strategies and not app.backend.profile.supports_salt:
        cache = config.cache.model_copy(update={"enabled": False, "warm_on_start": False, "keep_warm": False})
        plain = config.model_copy(update={"cache": cache})  # ragcache's router, so both send the same prompts
        uncached = RagCache(plain, app.corpus, create_backend(plain.backend, plain.cache), app.router)
    own: dict[str, RagCache] = {}
    if app.backend.profile.per_process_cache:
        for name in strategies:
            if name in ("naive-rag", "full"):
                backend = create_backend(config.backend, config.cache)
                own[name] = RagCache(app.config, app.corpus, backend, app.router)
    return app, uncached, own


def run_bench(
    config: Config,
    items: Sequence[WorkloadItem],
    out: str | Path,
    settings: BenchSettings,
    progress: ProgressFn | None = None,
) -> BenchResult:
    """Run the strategies over ``items`` on ``config``'s backend and write the report into ``out``."""
    warm_items, measured = split_workload(items, settings.warm_from)
    # The bench measures the caches it warms itself: the local KV folder (shared by the strategies'
    # backends and left by earlier runs) would make cold requests warm.
    config = config.model_copy(update={"cache": config.cache.model_copy(update={"persist": False})})
    app, uncached, own = _apps(config, settings.strategies)
    try:
        options = GenerationOptions(max_tokens=settings.max_tokens, temperature=0.0)
        strategies, notes = create_strategies(
            list(settings.strategies),
            app,
            options,
            uncached_app=uncached,
            naive_budget=settings.naive_budget,
            warm=settings.warm,
            own_apps=own,
            naive_match=settings.naive_match,
        )
        raw = replay(strategies, measured, time_scale=settings.time_scale, progress=progress, warm_items=warm_items)
        summaries = summarize_run([s.name for s in strategies], raw.records, settings.warmup_requests, raw.warmup)
        meta = _meta(config, app, measured, settings, raw.wall_s, raw.warmup_s)
        meta["ragcache warm-up"] = _warm_note(strategies, settings.warm_from, len(warm_items))
        meta["KV budget"] = (
            "one backend per strategy (own KV store each)" if own else "one shared engine: strategies share its cache"
        )
        if raw.interrupted:
            done = len({r.index for r in raw.records})
            meta["interrupted"] = f"Ctrl-C after {done} of {len(measured)} measured requests: partial results"
            notes = [f"interrupted: {meta['interrupted']}", *notes]
        result = BenchResult(meta=meta, summaries=summaries, records=raw.records, notes=[*notes, *settings.notes])
        write_report(result, out)
        return result
    finally:
        for each in (app, uncached, *own.values()):
            if each is not None:
                each.close()


def summarize_run(
    names: Sequence[str],
    records: Sequence[RequestRecord],
    warmup_requests: int = 0,
    warmup: dict[str, CacheUsage] | None = None,
) -> list[StrategySummary]:
    """Per strategy: all measured requests, then first-occurrence questions and repeats apart
    (rows ``<name> [first]`` / ``<name> [repeat]``, only when a run has both)."""
    prices = vendor_prices()
    out = []
    for name in names:
        mine = [r for r in records if r.strategy == name]
        out.append(summarize(name, mine, prices, warmup_requests=warmup_requests, warmup=(warmup or {}).get(name)))
        for label, part in (("first", [r for r in mine if not r.repeat]), ("repeat", [r for r in mine if r.repeat])):
            if part and len(part) < len(mine):
                out.append(summarize(f"{name} [{label}]", part, prices, warmup_requests=warmup_requests))
    return out


def _warm_note(strategies: Sequence[Strategy], warm_from: str, warm_items: int) -> str:
    rc = next((s for s in strategies if isinstance(s, RagcacheStrategy) and s.name == "ragcache"), None)
    if rc is None:
        return "–"
    source = {
        "first-half": f"from the routes of the workload's first {warm_items} requests (not measured)",
        "measured": "ORACLE: from the measured questions themselves",
        "none": "no warm-up",
    }[warm_from]
    return f"{rc.warm_mode} warm set, {source}: {rc.warmed} prefixes warmed before the run"


def _meta(
    config: Config,
    app: RagCache,
    items: Sequence[WorkloadItem],
    settings: BenchSettings,
    wall_s: float,
    warmup_s: dict[str, float],
) -> dict[str, object]:
    corpus, backend = app.corpus, app.backend
    return {
        "title": settings.title or f"{corpus.name} on {config.backend.kind}",
        "command": settings.command,
        "backend": config.backend.kind,
        "model": config.backend.model or "smollm2 (SmolLM2-135M-Instruct)",
        "context window": backend.capabilities.context_window,
        "corpus": f"{corpus.name} ({len(corpus.documents)} documents, {corpus.total_tokens} tokens, "
        f"{len(corpus.category_block_ids())} category blocks)",
        "warm from": settings.warm_from + (" (oracle)" if settings.warm_from == "measured" else ""),
        "workload": f"{settings.workload_path} ({len(items)} measured requests, "
        f"{len({i.session for i in items})} sessions)",
        "strategies": ", ".join(settings.strategies),
        "max output tokens": settings.max_tokens,
        "steady = after request": settings.warmup_requests,
        "naive-rag budget": settings.naive_budget or _NAIVE_MATCH[settings.naive_match],
        "warm-up seconds": ", ".join(f"{k} {v:.1f}" for k, v in warmup_s.items()),
        "replay wall seconds": round(wall_s, 1),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
