"""Live corpus updates: a rebuilt corpus reaches a running server without a restart.

Every ``server.reload_poll_s`` seconds the reloader stats each served build's
``manifest.json`` (one ``stat``: ``ragcache build`` swaps in a whole new folder,
so a new build is a new inode). ``POST /admin/reload`` and ``SIGHUP`` ask for
the same check at once. When the build's fingerprint changed, the new build is
loaded in a worker thread into a new :class:`~ragcache.app.RagCache` that keeps
the backend (the engine and its cache stay loaded) and read into memory whole
(``corpora.preload``); only then is it swapped in, by one dict store. A request
holds the facade it started with, so requests in flight finish on the old build
and later ones get the new one; none fails because of the switch. One log line
names both fingerprints; ``ragcache_corpus_build_info`` and
``ragcache_corpus_reloads_total`` say so on ``/metrics``. The old build's
keep-warm stops and its prefixes' caches are deleted; the new build's warm set
is warmed when ``cache.warm_on_start`` is on. A build that fails to load is
logged and counted, and the old one keeps serving (docs/architecture.md,
"Live corpus updates").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Literal

from ragcache.app import RagCache
from ragcache.server.corpora import Corpora, preload
from ragcache.server.metrics import ServerMetrics
from ragcache.server.redact import redact
from ragcache.server.warming import Warming

__all__ = ["ReloadResult", "Reloader"]

log = logging.getLogger("ragcache.server")

Stamp = tuple[int, int, int] | None  # the manifest's (inode, size, mtime_ns); None while a build is swapped in


@dataclass(frozen=True)
class ReloadResult:
    """What one reload of one corpus did."""

    corpus: str
    status: Literal["reloaded", "unchanged", "failed"]
    fingerprint: str  # the build served after the reload
    previous: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Reloader:
    """Watches each served build and swaps a rebuilt one in (module docstring)."""

    def __init__(self, corpora: Corpora, warming: Warming, metrics: ServerMetrics, poll_s: float) -> None:
        self._corpora = corpora
        self._warming = warming
        self._metrics = metrics
        self.poll_s = poll_s
        self._stamps = {name: _stamp(rag) for name, rag in corpora.items()}
        self._locks: dict[str, asyncio.Lock] = {}
        self._warm_tasks: set[asyncio.Task[None]] = set()
        for name, rag in corpora.items():
            metrics.observe_build(name, rag.corpus.fingerprint)

    async def watch(self) -> None:
        """Poll every ``poll_s`` seconds until cancelled (a failed check is logged, never fatal)."""
        while True:
            await asyncio.sleep(self.poll_s)
            for name in self._corpora.names():
                stamp = _stamp(self._corpora.get(name))
                if stamp is None or stamp == self._stamps[name]:
                    continue
                try:
                    await self.reload(name)
                except Exception as exc:  # the watch must outlive one bad reload
                    log.error("corpus %r: reloading failed: %s", name, redact(f"{type(exc).__name__}: {exc}"))
                    self._stamps[name] = stamp

    async def reload_all(self) -> list[ReloadResult]:
        """Check every corpus now (``POST /admin/reload``, ``SIGHUP``)."""
        return [await self.reload(name) for name in self._corpora.names()]

    async def reload(self, name: str) -> ReloadResult:
        """Load ``name``'s build again and swap it in when its fingerprint changed."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            old = self._corpora.get(name)
            stamp = _stamp(old)
            if _fingerprint_on_disk(old) == old.corpus.fingerprint:  # the manifest alone: cheap
                self._stamps[name] = stamp
                return ReloadResult(name, "unchanged", old.corpus.fingerprint, old.corpus.fingerprint)
            try:
                new = await asyncio.to_thread(_load, old)
            except Exception as exc:  # a broken or half-written build: keep serving the old one
                detail = redact(f"{type(exc).__name__}: {exc}")
                log.error("corpus %r: the new build did not load, still serving %s: %s", name, _short(old), detail)
                self._metrics.observe_reload_failure(name)
                self._stamps[name] = stamp  # retried when the build changes again
                return ReloadResult(name, "failed", old.corpus.fingerprint, old.corpus.fingerprint, detail)
            self._stamps[name] = stamp
            if new.corpus.fingerprint == old.corpus.fingerprint:
                return ReloadResult(name, "unchanged", old.corpus.fingerprint, old.corpus.fingerprint)
            self._warming.retire(name)
            self._corpora.replace(name, new)
            self._metrics.observe_build(name, new.corpus.fingerprint, previous=old.corpus.fingerprint)
            log.info("corpus %r: reloaded build %s -> %s (%s, pid %d)", name, _short(old), _short(new),
                     new.corpus.root, os.getpid())  # fmt: skip
            task = asyncio.create_task(self._warming.replace(name, new))
            self._warm_tasks.add(task)
            task.add_done_callback(self._warm_tasks.discard)
            return ReloadResult(name, "reloaded", new.corpus.fingerprint, old.corpus.fingerprint)

    def cancel(self) -> None:
        """Stop the warm-ups of reloaded builds (shutdown)."""
        for task in self._warm_tasks:
            task.cancel()


def _load(old: RagCache) -> RagCache:
    """A facade over the build now on disk, with ``old``'s config, backend and conversation store (a
    ``/v1/ask`` session outlives the reload), read into memory."""
    rag = RagCache.from_config(old.config, backend=old.backend, store=old.conversations.store)
    preload(rag)
    return rag


def _fingerprint_on_disk(rag: RagCache) -> str | None:
    """The fingerprint in the manifest now at the build's path (None: unreadable, or being swapped in)."""
    try:
        return str(json.loads((rag.corpus.root / "manifest.json").read_text(encoding="utf-8"))["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stamp(rag: RagCache) -> Stamp:
    try:
        st = (rag.corpus.root / "manifest.json").stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _short(rag: RagCache) -> str:
    return rag.corpus.fingerprint[:12]
