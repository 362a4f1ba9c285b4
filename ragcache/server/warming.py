"""Readiness and the warm loop: warm each corpus's prefixes at start, then keep the busy ones warm.

Per corpus the state is ``warming``, ``ready`` or ``failed: …``; ``/readyz``
answers 200 once every corpus is ready. Keep-warm runs once per deployment: in
every worker for the per-process local store, in a single-worker server
otherwise (with more workers, run ``ragcache warm`` beside them).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from ragcache.app import RagCache
from ragcache.cache.warmer import Warmer, policy_for
from ragcache.prompt import Route, assemble_prompt
from ragcache.server.corpora import Corpora

__all__ = ["WORKERS_ENV", "Warming"]

log = logging.getLogger("ragcache.server")
WORKERS_ENV = "RAGCACHE_SERVER_WORKERS"


class Warming:
    """Each corpus's warmer, its readiness and what its warm-up found."""

    def __init__(self, corpora: Corpora) -> None:
        self._corpora = corpora
        self.states: dict[str, str] = {name: "warming" for name in corpora.names()}
        self.results: dict[str, list[dict[str, Any]]] = {}
        self._warmers = {name: _warmer(rag) for name, rag in corpora.items()}

    def is_ready(self, name: str) -> bool:
        return self.states.get(name) == "ready"

    def all_ready(self) -> bool:
        return bool(self.states) and all(state == "ready" for state in self.states.values())

    def report(self) -> dict[str, str]:
        return dict(sorted(self.states.items()))

    async def warm_all(self) -> None:
        """Warm every corpus (when ``cache.warm_on_start``), then start keep-warm where it belongs."""
        for name, rag in self._corpora.items():
            self.states[name] = await self._warm(name, rag)
            if self.states[name] == "ready" and rag.config.cache.keep_warm and _keep_warm_here(rag):
                self._warmers[name].start()

    async def _warm(self, name: str, rag: RagCache) -> str:
        if not rag.config.cache.warm_on_start:
            return "ready"
        try:
            results = await asyncio.to_thread(self._warmers[name].warm, rag.prefixes())
        except Exception as exc:
            log.error("warming corpus %r failed: %s", name, exc)
            return f"failed: {type(exc).__name__}: {exc}"
        self.results[name] = [r.to_dict() for r in results]
        for result in results:
            log.info("warm %s: %s (%s)", result.label, result.status, result.detail)
        errors = [r for r in results if r.status == "error"]
        return f"failed: {errors[0].label}: {errors[0].detail}" if errors else "ready"

    def record(self, name: str, route: Route | None) -> None:
        """Count one answer's prefix as traffic, so keep-warm refreshes what is used."""
        if route is None:
            return
        rag = self._corpora.get(name)
        self._warmers[name].record(assemble_prompt(rag.stable_segments(route.block_ids), "", route=route))

    def stop(self) -> None:
        for warmer in self._warmers.values():
            warmer.stop()


def _warmer(rag: RagCache) -> Warmer:
    return Warmer(rag.backend, policy_for(rag.backend, rag.config.backend.model, rag.config.cache.ttl_s))


def _keep_warm_here(rag: RagCache) -> bool:
    workers = int(os.environ.get(WORKERS_ENV, "1") or 1)
    return rag.backend.name == "local" or workers <= 1
