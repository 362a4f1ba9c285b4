"""Readiness and the warm loop: warm each corpus's warm set at start, then keep the busy ones warm.

The warm set (``RagCache.warm_set``, cache/warmset.py) is the pinned prefixes
plus those traffic used, capped by count and tokens; every answered request is
counted in the corpus's traffic log, merged into its file every
``_SAVE_EVERY`` requests and at shutdown, so the next start warms what was used.

Per corpus the state is ``warming`` (with its progress: ``warming: 3 of 12
prefixes warm; …``), ``ready`` or ``failed: …``; ``/readyz`` answers 200 once
every corpus is ready. The warm-up runs in the background and never holds a
live request back (the local engine runs its steps only while no request waits
or runs: backends/local/batcher.py), so requests are answered while it runs. One warmer per deployment: the process
that takes the exclusive lock beside the traffic file warms and keeps warm; the
other workers skip and say so in ``/readyz``'s ``warm_detail`` (the local
backend's workers load the warmed prefixes from its KV folder). The exception is
the local backend with ``cache.persist: false``: its KV store lives in each
process, so each worker warms its own. A worker that skips still *prepares* the
warm set before it is ready: where the backend counts exact prefix tokens it asks
for each prefix's count, which sends no engine request but leaves what the first
request would otherwise do on its clock done (the ``vllm`` backend learns the
prefix's token ids and loads its tail renderer; docs/architecture.md, "Scaling past
one machine").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import IO, Any

from ragcache.app import RagCache
from ragcache.cache.warmer import Warmer, policy_for
from ragcache.cache.warmset import TrafficLog, acquire_warm_lock
from ragcache.errors import RagCacheError
from ragcache.prompt import Prompt, Route, assemble_prompt
from ragcache.server.corpora import Corpora
from ragcache.server.redact import redact

__all__ = ["WORKERS_ENV", "Warming"]

log = logging.getLogger("ragcache.server")
WORKERS_ENV = "RAGCACHE_SERVER_WORKERS"
_SAVE_EVERY = 32  # requests between merges of a worker's traffic into the file


class Warming:
    """Each corpus's warmer, its readiness and what its warm-up found."""

    def __init__(self, corpora: Corpora) -> None:
        self._corpora = corpora
        self.states: dict[str, str] = {name: "warming" for name in corpora.names()}
        self.results: dict[str, list[dict[str, Any]]] = {}
        # Per corpus, the prefixes whose warm-up was proved by a cached repeat: fingerprint -> cached tokens.
        self.proven: dict[str, dict[str, int]] = {}
        self.detail: dict[str, str] = {}  # per corpus: who warms it (this worker, or another that holds the lock)
        self.traffic = {name: _traffic(rag) for name, rag in corpora.items()}
        self._warm_sets: dict[str, set[str]] = {}
        self._warmers = {name: _warmer(rag, self._refreshable(name)) for name, rag in corpora.items()}
        self._locks: dict[str, IO[str]] = {}

    def is_ready(self, name: str) -> bool:
        return self.states.get(name) == "ready"

    def all_ready(self) -> bool:
        return bool(self.states) and all(state == "ready" for state in self.states.values())

    def report(self) -> dict[str, str]:
        return dict(sorted(self.states.items()))

    async def warm_all(self) -> None:
        """Warm every corpus (when ``cache.warm_on_start``), then start keep-warm where it belongs."""
        for name, rag in self._corpora.items():
            if not self._is_warmer(name, rag):
                self.states[name] = "preparing"
                await self._prepare(name, rag)
                self.states[name] = "ready"
                continue
            self.states[name] = await self._warm(name, rag)
            if self.states[name] == "ready" and rag.config.cache.keep_warm:
                self._warmers[name].start()

    async def replace(self, name: str, rag: RagCache) -> None:
        """``name`` is now served from ``rag`` (a reload; :meth:`retire` ran first): delete the previous
        build's prefix caches, and warm the new build's warm set when warm-up is on. The corpus stays
        ready throughout: the previous build served until now, the new one answers while it warms."""
        self.traffic[name] = _traffic(rag)
        self._warmers[name] = _warmer(rag, self._refreshable(name))
        if not self._is_warmer(name, rag):
            await self._prepare(name, rag)
            return
        if not rag.config.cache.warm_on_start:
            await asyncio.to_thread(self._retire_stale, name, rag)
            return
        state = await self._warm(name, rag, progress=self._reload_progress(name))
        self.states[name] = state
        if state == "ready" and rag.config.cache.keep_warm:
            self._warmers[name].start()

    def retire(self, name: str) -> None:
        """Stop keeping ``name``'s current build warm, save its traffic, release its warm lock and forget
        what its warm-up found (before the corpus is swapped: the traffic goes to that build's file)."""
        self._warmers[name].stop()
        if self.traffic[name].unsaved:
            self._save(name)
        lock = self._locks.pop(name, None)
        if lock is not None:
            lock.close()
        for found in (self._warm_sets, self.results, self.proven):
            found.pop(name, None)

    def _reload_progress(self, name: str) -> Callable[[str, int, int], None]:
        """A reload's warm-up shows in ``warm_detail`` only: the corpus is answering, so it stays ready."""
        detail = self.detail.get(name, "")

        def report(stage: str, done: int, total: int) -> None:
            self.detail[name] = f"{detail}; new build: {done} of {total} prefixes warm ({stage})"

        return report

    def _is_warmer(self, name: str, rag: RagCache) -> bool:
        """Whether this process warms ``name``: it holds the deployment's warm lock (or has its own cache)."""
        if _per_process_cache(rag):
            self.detail[name] = f"warmed by this worker (pid {os.getpid()}): the local KV store is per process"
            return True
        try:
            lock = acquire_warm_lock(rag.traffic_file)
        except OSError as exc:  # no writable traffic_dir: warm here rather than not at all
            self.detail[name] = f"warmed by this worker (pid {os.getpid()}): no warm lock ({exc})"
            log.warning("corpus %r: cannot take the warm lock: %s (set cache.traffic_dir)", name, exc)
            return True
        if lock is None:
            self.detail[name] = f"skipped: another worker holds {rag.traffic_file.with_suffix('.warm.lock')} and warms"
            log.info("corpus %r: %s", name, self.detail[name])
            return False
        self._locks[name] = lock
        self.detail[name] = f"warmed by this worker (pid {os.getpid()})"
        return True

    async def _prepare(self, name: str, rag: RagCache) -> None:
        """What another worker's warm-up does here without the engine: count each warm-set prefix's
        exact tokens where the backend can (module docstring). A failure is logged; the first
        request then does it."""
        if not rag.config.cache.warm_on_start:
            return

        def count() -> int:
            if not rag.backend.capabilities.exact_prefix_tokens:
                return 0
            prompts = rag.warm_set(self.traffic[name])
            for prompt in prompts:
                rag.backend.prefix_tokens(prompt)
            return len(prompts)

        try:
            prepared = await asyncio.to_thread(count)
        except Exception as exc:  # the engine may still be starting: requests learn it instead
            log.warning("corpus %r: preparing its prefixes failed: %s", name, redact(str(exc)))
            return
        if prepared:
            self.detail[name] += f"; {prepared} prefix(es) prepared here"

    def _refreshable(self, name: str) -> Callable[[], set[str]]:
        """Keep-warm's limit: the fingerprints of the corpus's current warm set (computed on first use)."""

        def allowed() -> set[str]:
            if name not in self._warm_sets:
                rag = self._corpora.get(name)
                self._warm_sets[name] = {p.prefix_fingerprint for p in rag.warm_set(self.traffic[name])}
            return self._warm_sets[name]

        return allowed

    async def _warm(self, name: str, rag: RagCache, progress: Callable[[str, int, int], None] | None = None) -> str:
        if not rag.config.cache.warm_on_start:
            return "ready"
        try:
            prompts = await asyncio.to_thread(rag.warm_set, self.traffic[name])
            self._warm_sets[name] = {p.prefix_fingerprint for p in prompts}
            await asyncio.to_thread(self._retire_stale, name, rag)
            report = progress or self._progress(name)
            results = await asyncio.to_thread(self._warmers[name].warm, prompts, progress=report)
        except Exception as exc:
            log.error("warming corpus %r failed: %s", name, exc)
            return redact(f"failed: {type(exc).__name__}: {exc}")
        self.results[name] = [{**r.to_dict(), "detail": redact(r.detail)} for r in results]
        self.proven[name] = {
            r.fingerprint: r.expected_cached for r in results if r.status == "cached" and r.expected_cached > 0
        }
        for result in results:
            level = logging.WARNING if result.status in {"error", "not-cached"} else logging.INFO
            log.log(level, "warm %s: %s (%s)", result.label, result.status, result.detail)
        errors = [r for r in results if r.status == "error"]
        return redact(f"failed: {errors[0].label}: {errors[0].detail}") if errors else "ready"

    def _progress(self, name: str) -> Callable[[str, int, int], None]:
        """What ``/readyz`` says while ``name`` warms: how far, and that live requests go first."""

        def report(stage: str, done: int, total: int) -> None:
            if done < total:
                self.states[name] = (f"warming: {done} of {total} prefixes warm ({stage} in the background; "
                                     "live requests go first)")  # fmt: skip

        return report

    def _retire_stale(self, name: str, rag: RagCache) -> None:
        """Delete the caches an earlier build of ``name`` left behind (the warmer does it once, at
        warm-up); the prefixes of every corpus served here stay. A failure is logged, not fatal."""
        others = (p.prefix_fingerprint for other in self._corpora if other is not rag for p in other.prefixes())
        try:
            deleted = rag.retire_stale_caches(itertools.chain(self._warm_sets.get(name, ()), others))
        except RagCacheError as exc:
            log.warning("corpus %r: deleting the caches of an earlier build failed: %s", name, redact(str(exc)))
            return
        if deleted:
            log.info("corpus %r: deleted %d cache(s) of an earlier build: %s", name, len(deleted), ", ".join(deleted))

    def record(self, name: str, route: Route | None) -> str | None:
        """Count one answer's prefix as traffic, so keep-warm refreshes what is used; its fingerprint."""
        if route is None:
            return None
        rag = self._corpora.get(name)
        prompt = assemble_prompt(rag.stable_segments(route.block_ids), "", route=route)
        self._warmers[name].record(prompt)
        _mark_warm(rag)(prompt)  # a conversation's later turn re-sends its prefix without a route
        traffic = self.traffic[name]
        traffic.record(route.block_ids)
        if traffic.unsaved >= _SAVE_EVERY:
            self._save(name)
        return prompt.prefix_fingerprint

    def _save(self, name: str) -> None:
        rag = self._corpora.get(name)
        try:
            self.traffic[name].save(rag.traffic_file)
        except (OSError, RagCacheError) as exc:
            log.warning("saving the traffic of corpus %r to %s failed: %s", name, rag.traffic_file, exc)
        else:
            if name in self._warm_sets:  # keep-warm follows the warm set as traffic moves
                self._warm_sets[name] = {p.prefix_fingerprint for p in rag.warm_set(self.traffic[name])}

    def is_miss(self, name: str, fingerprint: str | None, cached_tokens: int) -> bool:
        """True when ``fingerprint`` was proved warm but an answer on it read fewer cached tokens:
        the cache had to write the prefix again (a prompt's structure changed, or it was evicted)."""
        expected = self.proven.get(name, {}).get(fingerprint or "", 0)
        return expected > 0 and cached_tokens < expected

    def stop(self) -> None:
        for warmer in self._warmers.values():
            warmer.stop()
        for name, traffic in self.traffic.items():
            if traffic.unsaved:
                self._save(name)
        for lock in self._locks.values():
            lock.close()  # closing the file releases the flock
        self._locks.clear()


def _warmer(rag: RagCache, refreshable: Callable[[], set[str]]) -> Warmer:
    policy = policy_for(rag.backend, rag.config.backend.model, rag.config.cache.ttl_s)
    return Warmer(rag.backend, policy, refreshable=refreshable, on_warm=_mark_warm(rag))


def _mark_warm(rag: RagCache) -> Callable[[Prompt], None]:
    """Tell ``rag``'s router that a prompt's prefix is warm now, on the clock its routes are given
    (``RagCache.route``: ``time.monotonic()``), so it prices that run at the read price."""
    mark = getattr(rag.router, "mark_warm", None)

    def on_warm(prompt: Prompt) -> None:
        if mark is not None:
            mark([s.block_id for s in prompt.stable if s.block_id is not None], time.monotonic())

    return on_warm


def _traffic(rag: RagCache) -> TrafficLog:
    """The corpus's persisted traffic; an unreadable file is logged and replaced by an empty log."""
    try:
        return rag.load_traffic()
    except RagCacheError as exc:
        log.warning("%s; starting with no traffic", exc)
        return TrafficLog(rag.corpus.fingerprint, rag.config.cache.warm_half_life_requests)


def _per_process_cache(rag: RagCache) -> bool:
    """The local backend without persistence keeps its KV in each process: every worker warms its own."""
    return rag.backend.profile.per_process_cache and not rag.config.cache.persist
