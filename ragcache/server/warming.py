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
from ragcache.server.redact import redact

__all__ = ["WORKERS_ENV", "Warming"]

log = logging.getLogger("ragcache.server")
WORKERS_ENV = "RAGCACHE_SERVER_WORKERS"


class Warming:
    """Each corpus's warmer, its readiness and what its warm-up found."""

    def __init__(self, corpora: Corpora) -> None:
        self._corpora = corpora
        self.states: dict[str, str] = {name: "warming" for name in corpora.names()}
        self.results: dict[str, list[dict[str, Any]]] = {}
        # Per corpus, the prefixes whose warm-up was proved by a cached repeat: fingerprint -> cached tokens.
        self.proven: dict[str, dict[str, int]] = {}
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
            return redact(f"failed: {type(exc).__name__}: {exc}")
        self.results[name] = [{**r.to_dict(), "detail": redact(r.detail)} for r in results]
        self.proven[name] = {r.fingerprint: r.expected_cached for r in results
                             if r.status == "cached" and r.expected_cached > 0}
        for result in results:
            level = logging.WARNING if result.status in {"error", "not-cached"} else logging.INFO
            log.log(level, "warm %s: %s (%s)", result.label, result.status, result.detail)
        errors = [r for r in results if r.status == "error"]
        return redact(f"failed: {errors[0].label}: {errors[0].detail}") if errors else "ready"

    def record(self, name: str, route: Route | None) -> str | None:
        """Count one answer's prefix as traffic, so keep-warm refreshes what is used; its fingerprint."""
        if route is None:
            return None
        rag = self._corpora.get(name)
        prompt = assemble_prompt(rag.stable_segments(route.block_ids), "", route=route)
        self._warmers[name].record(prompt)
        return prompt.prefix_fingerprint

    def is_miss(self, name: str, fingerprint: str | None, cached_tokens: int) -> bool:
        """True when ``fingerprint`` was proved warm but an answer on it read fewer cached tokens:
        the cache had to write the prefix again (a prompt's structure changed, or it was evicted)."""
        expected = self.proven.get(name, {}).get(fingerprint or "", 0)
        return expected > 0 and cached_tokens < expected

    def stop(self) -> None:
        for warmer in self._warmers.values():
            warmer.stop()


def _warmer(rag: RagCache) -> Warmer:
    return Warmer(rag.backend, policy_for(rag.backend, rag.config.backend.model, rag.config.cache.ttl_s))


def _keep_warm_here(rag: RagCache) -> bool:
    workers = int(os.environ.get(WORKERS_ENV, "1") or 1)
    return rag.backend.name == "local" or workers <= 1
