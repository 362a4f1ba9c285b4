"""What one server process holds, each concern in its own small part.

``corpora`` (the facades by name), ``warming`` (readiness and the warm loop),
``sessions`` (``/v1/ask`` histories, per process by design), ``metrics``.
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
from ragcache.server.corpora import Corpora, ServeTarget
from ragcache.server.metrics import ServerMetrics
from ragcache.server.sessions import SessionStore
from ragcache.server.warming import Warming

__all__ = ["ServerState"]


@dataclass
class ServerState:
    corpora: Corpora
    warming: Warming
    sessions: SessionStore
    metrics: ServerMetrics
    settings: ServerConfig
    api_keys: tuple[str, ...]

    @classmethod
    def create(cls, target: ServeTarget) -> ServerState:
        """The state over ``target``; server settings and API keys come from the first corpus's config."""
        corpora = Corpora.load(target)
        settings = corpora.config.server
        keys = os.environ.get(settings.api_keys_env, "")
        return cls(
            corpora=corpora,
            warming=Warming(corpora),
            sessions=SessionStore(max_messages=settings.max_history_messages),
            metrics=ServerMetrics(),
            settings=settings,
            api_keys=tuple(key.strip() for key in keys.split(",") if key.strip()),
        )

    async def start(self) -> None:
        """Warm up (the app's lifespan runs this in the background)."""
        await self.warming.warm_all()
        self.metrics.sample(min_interval_s=0.0)

    def observe(self, name: str, answer: Answer) -> None:
        """Count a finished answer in the metrics and in the keep-warm traffic."""
        self.metrics.observe_answer(name, self.corpora.get(name).backend.name, answer)
        self.warming.record(name, answer.route)

    def close(self) -> None:
        self.warming.stop()
        for rag in self.corpora:
            with contextlib.suppress(Exception):
                rag.close()
        if self.metrics.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
