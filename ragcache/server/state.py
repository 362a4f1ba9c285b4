"""What one server process holds, each concern in its own small part.

``corpora`` (the facades by name, each with its conversations), ``warming``
(readiness and the warm loop), ``metrics``.
Cost and saving ride on each :class:`~ragcache.app.Answer`; nothing here
prices anything. The parts raise ``ragcache.errors``; ``server/errors.py``
turns them into HTTP replies.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from ragcache.app import Answer
from ragcache.config import ServerConfig
from ragcache.errors import ConfigError
from ragcache.server.corpora import Corpora, ServeTarget
from ragcache.server.metrics import ServerMetrics
from ragcache.server.redact import add_secrets, env_secrets
from ragcache.server.security import Guard, KeyRing, RateLimiter
from ragcache.server.warming import Warming

__all__ = ["ServerState"]


@dataclass
class ServerState:
    corpora: Corpora
    warming: Warming
    metrics: ServerMetrics
    settings: ServerConfig
    guard: Guard

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
        state = cls(
            corpora=corpora,
            warming=Warming(corpora),
            metrics=ServerMetrics(),
            settings=settings,
            guard=Guard(keys, limiter),
        )
        state.metrics.watch_queues(state.queue_depths)
        return state

    async def start(self) -> None:
        """Warm up (the app's lifespan runs this in the background)."""
        await self.warming.warm_all()
        self.metrics.sample(min_interval_s=0.0)

    def observe(self, name: str, answer: Answer) -> None:
        """Count a finished answer in the metrics and the keep-warm traffic, and a miss on a warmed prefix."""
        backend = self.corpora.get(name).backend.name
        self.metrics.observe_answer(name, backend, answer)
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
        self.warming.stop()
        for rag in self.corpora:
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
