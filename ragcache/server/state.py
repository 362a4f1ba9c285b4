"""What one server process holds, each concern in its own small part.

``corpora`` (the facades by name, each with its conversations), ``warming``
(readiness and the warm loop), ``reloader`` (rebuilt corpora swapped in live),
``metrics``.
Cost and saving ride on each :class:`~ragcache.app.Answer`; nothing here
prices anything. The parts raise ``ragcache.errors``; ``server/errors.py``
turns them into HTTP replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

from ragcache.app import Answer, RagCache
from ragcache.config import ServerConfig
from ragcache.errors import ConfigError
from ragcache.server.corpora import Corpora, ServeTarget, preload
from ragcache.server.metrics import ServerMetrics
from ragcache.server.redact import add_secrets, env_secrets, redact
from ragcache.server.reload import Reloader
from ragcache.server.security import Guard, KeyRing, RateLimiter
from ragcache.server.warming import Warming

__all__ = ["ServerState"]

log = logging.getLogger("ragcache.server")


@dataclass
class ServerState:
    corpora: Corpora
    warming: Warming
    metrics: ServerMetrics
    settings: ServerConfig
    guard: Guard
    reloader: Reloader

    @classmethod
    def create(cls, target: ServeTarget) -> ServerState:
        """The state over ``target``; server settings and API keys come from the first corpus's config."""
        add_secrets(env_secrets())  # before loading: a backend may already fail with its key in the message
        corpora = Corpora.load(target)
        settings = corpora.config.server
        keys = KeyRing.parse(os.environ.get(settings.api_keys_env, ""))
        if settings.protect_metrics and not keys:
            raise ConfigError(
                f"server.protect_metrics needs API keys: set {settings.api_keys_env}=key1,key2 "
                "(or turn protect_metrics off)"
            )
        add_secrets(env_secrets([settings.api_keys_env, *_backend_key_envs(corpora)]))
        limiter = RateLimiter(settings.rate_limit_per_min) if settings.rate_limit_per_min else None
        warming, metrics = Warming(corpora), ServerMetrics()
        state = cls(
            corpora=corpora,
            warming=warming,
            metrics=metrics,
            settings=settings,
            guard=Guard(keys, limiter),
            reloader=Reloader(corpora, warming, metrics, settings.reload_poll_s),
        )
        state.metrics.watch_queues(state.queue_depths)
        return state

    def announce(self, url: str | None) -> None:
        """One line per corpus: its model id, build and URLs; and a stale build, loudly."""
        base = (url or "").rstrip("/")
        for name, rag in self.corpora.items():
            log.info("serving corpus %s as model %r (build %s, fingerprint %s)", rag.config.resolved_corpus(),
                     name, rag.corpus.root, rag.corpus.fingerprint[:12])  # fmt: skip
            if rag.stale is not None:
                log.warning("corpus %r: %s", name, rag.stale.message())
        if base:
            log.info("OpenAI-compatible API: %s/v1 (model = corpus name) · dashboard: %s/ · metrics: %s/metrics",
                     base, base, base)  # fmt: skip
        if self.reloader.poll_s > 0:
            log.info("watching the builds for rebuilds every %gs (also: POST /admin/reload, SIGHUP)",
                     self.reloader.poll_s)  # fmt: skip

    async def start(self) -> None:
        """Read each build into memory (a rebuild may replace its folder), then warm up (the app's
        lifespan runs this in the background)."""
        for rag in self.corpora:
            try:
                await asyncio.to_thread(preload, rag)
            except Exception as exc:  # the request that needs it reports it
                log.warning("corpus %r: reading the build into memory failed: %s", rag.corpus.name, redact(str(exc)))
        await self.warming.warm_all()
        self.metrics.sample(min_interval_s=0.0)

    def observe(self, name: str, answer: Answer, rag: RagCache | None = None) -> None:
        """Count a finished answer in the metrics and the keep-warm traffic, and a miss on a warmed prefix.
        ``rag``: the facade that answered; an answer from a build since reloaded counts in the metrics only."""
        current = self.corpora.get(name)
        backend = current.backend.name
        self.metrics.observe_answer(name, backend, answer)
        if rag is not None and rag is not current:
            return
        fingerprint = self.warming.record(name, answer.route)
        if self.warming.is_miss(name, fingerprint, answer.usage.cached_tokens):
            route = answer.route.mode if answer.route is not None else "none"
            self.metrics.observe_warm_miss(name, backend, route)

    def queue_depths(self) -> list[tuple[str, str, int]]:
        """``(corpus, backend, waiting requests)`` for each served corpus (``Backend.queue_depth``)."""
        rows = []
        for name, rag in self.corpora.items():
            try:
                depth = int(rag.backend.queue_depth())
            except Exception:  # metrics must not fail because one engine cannot say
                depth = 0
            rows.append((name, rag.backend.name, depth))
        return rows

    def close(self) -> None:
        self.reloader.cancel()
        self.warming.stop()
        closed: set[int] = set()
        for rag in self.corpora:
            if id(rag.backend) not in closed:  # corpora served by one process may share their backend
                closed.add(id(rag.backend))
                with contextlib.suppress(Exception):
                    rag.close()
        if self.metrics.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


def _backend_key_envs(corpora: Corpora) -> list[str]:
    """The variables the served backends read their keys from."""
    names = []
    for rag in corpora:
        names.append(rag.config.backend.api_key_env or "")
        names.append(getattr(rag.backend, "key_env_var", None) or "")
    return [name for name in names if name]
