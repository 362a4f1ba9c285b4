"""``ragcache_warm_prefix_misses_total``: an answer on a prefix the server's warmer
proved warm that reads fewer cached tokens than the warm-up did — the cache wrote
it again. Real parts: the local model over corpora/small, the server's own state
(warm-up at start, the per-answer accounting of the routes)."""

from __future__ import annotations

import asyncio
from typing import Any

from server_harness import metric_value

from ragcache.backends.base import GenerationOptions
from ragcache.server.state import ServerState

QUESTION = "Does SQLite need a separate server process?"


def misses(state: ServerState) -> float:
    text = state.metrics.exposition()[0].decode()
    return metric_value(text, "ragcache_warm_prefix_misses_total", corpus="small", backend="local")


def test_a_warmed_prefix_answered_without_its_cache_counts_a_miss(small_rag: Any) -> None:
    state = ServerState.create(small_rag)
    try:
        asyncio.run(state.start())
        assert state.warming.is_ready("small"), state.warming.report()
        proven = state.warming.proven["small"]
        assert proven and all(tokens > 0 for tokens in proven.values())
        options = GenerationOptions(max_tokens=1)

        warm = small_rag.ask(QUESTION, options=options)
        state.observe("small", warm)
        assert warm.usage.cached_tokens >= max(proven.values())
        assert misses(state) == 0

        small_rag.backend.store.clear()  # the engine lost the prefix: the next answer writes it again
        cold = small_rag.ask(QUESTION, options=options)
        state.observe("small", cold)
        assert cold.usage.cached_tokens < max(proven.values())
        assert misses(state) == 1
        route = cold.route.mode
        text = state.metrics.exposition()[0].decode()
        assert metric_value(text, "ragcache_warm_prefix_misses_total", route=route) == 1
        assert metric_value(text, "ragcache_queue_depth", corpus="small", backend="local") == 0
    finally:
        state.warming.stop()  # the facade belongs to the session fixture: not closed here
