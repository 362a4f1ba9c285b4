"""A whole bench experiment: config → apps → strategies → replay → summaries → report on disk.

``replay.py`` is the request-by-request part; this module wires it with the
strategies, the vendor prices and the report.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ragcache.app import RagCache
from ragcache.backends.base import GenerationOptions
from ragcache.bench.metrics import PriceFn, summarize
from ragcache.bench.replay import ProgressFn, replay
from ragcache.bench.report import BenchResult, write_report
from ragcache.bench.strategies import SALTED_KINDS, RagcacheStrategy, Strategy, create_strategies
from ragcache.bench.workload import WorkloadItem
from ragcache.config import Config
from ragcache.errors import ConfigError

__all__ = ["PRICED_MODELS", "BenchSettings", "run_bench", "vendor_prices"]


@dataclass(frozen=True)
class BenchSettings:
    """What the CLI (or a caller) asks of a run."""

    strategies: tuple[str, ...] = ("ragcache", "naive-rag", "full", "no-cache")
    max_tokens: int = 32
    warmup_requests: int = 0
    time_scale: float = 0.0
    naive_budget: int | None = None
    warm: str = "auto"
    command: str = ""
    title: str = ""
    workload_path: str = ""
    notes: tuple[str, ...] = ()


PRICED_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5.1", "gpt-4o-mini")


def vendor_prices(models: Sequence[str] = PRICED_MODELS) -> dict[str, PriceFn]:
    """Each model's list prices (ragcache.cache.pricing) as a function of one measured usage."""
    from ragcache.cache.pricing import cost_at, price_for

    out: dict[str, PriceFn] = {}
    for model in models:
        price = price_for(model)
        if price is None:
            raise ConfigError(f"no price for model {model!r} in ragcache/cache/prices.json")
        out[f"{price.vendor} {model}"] = lambda usage, p=price: cost_at(usage, p).usd
    return out


def _apps(config: Config, strategies: Sequence[str]) -> tuple[RagCache, RagCache | None]:
    app = RagCache.from_config(config)
    uncached = None
    if "no-cache" in strategies and config.backend.kind not in SALTED_KINDS:
        cache = config.cache.model_copy(update={"enabled": False, "warm_on_start": False, "keep_warm": False})
        uncached = RagCache.from_config(config.model_copy(update={"cache": cache}))
    return app, uncached


def run_bench(
    config: Config,
    items: Sequence[WorkloadItem],
    out: str | Path,
    settings: BenchSettings,
    progress: ProgressFn | None = None,
) -> BenchResult:
    """Run the strategies over ``items`` on ``config``'s backend and write the report into ``out``."""
    app, uncached = _apps(config, settings.strategies)
    try:
        options = GenerationOptions(max_tokens=settings.max_tokens, temperature=0.0)
        strategies, notes = create_strategies(list(settings.strategies), app, options, uncached_app=uncached,
                                              naive_budget=settings.naive_budget, warm=settings.warm)
        raw = replay(strategies, items, time_scale=settings.time_scale, progress=progress)
        prices = vendor_prices()
        summaries = [
            summarize(s.name, [r for r in raw.records if r.strategy == s.name], prices,
                      warmup_requests=settings.warmup_requests, warmup=raw.warmup[s.name])
            for s in strategies
        ]
        meta = _meta(config, app, items, settings, raw.wall_s, raw.warmup_s)
        meta["ragcache warm-up"] = _warm_note(strategies)
        result = BenchResult(meta=meta, summaries=summaries, records=raw.records,
                             notes=[*notes, *settings.notes])
        write_report(result, out)
        return result
    finally:
        for each in (app, uncached):
            if each is not None:
                each.close()


def _warm_note(strategies: Sequence[Strategy]) -> str:
    rc = next((s for s in strategies if isinstance(s, RagcacheStrategy) and s.name == "ragcache"), None)
    if rc is None:
        return "–"
    return f"{rc.warm_mode}: {rc.warmed} prefixes warmed before the run"


def _meta(config: Config, app: RagCache, items: Sequence[WorkloadItem], settings: BenchSettings,
          wall_s: float, warmup_s: dict[str, float]) -> dict[str, object]:
    corpus, backend = app.corpus, app.backend
    return {
        "title": settings.title or f"{corpus.name} on {config.backend.kind}",
        "command": settings.command,
        "backend": config.backend.kind,
        "model": config.backend.model or "smollm2 (SmolLM2-135M-Instruct)",
        "context window": backend.capabilities.context_window,
        "corpus": f"{corpus.name} ({len(corpus.documents)} documents, {corpus.total_tokens} tokens, "
                  f"{len(corpus.category_block_ids())} category blocks)",
        "workload": f"{settings.workload_path} ({len(items)} requests, "
                    f"{len({i.session for i in items})} sessions)",
        "strategies": ", ".join(settings.strategies),
        "max output tokens": settings.max_tokens,
        "steady = after request": settings.warmup_requests,
        "naive-rag budget": settings.naive_budget or "matched per request to ragcache's corpus tokens",
        "warm-up seconds": ", ".join(f"{k} {v:.1f}" for k, v in warmup_s.items()),
        "replay wall seconds": round(wall_s, 1),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
