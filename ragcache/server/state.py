"""What one server process holds: the facades, readiness, sessions and metrics.

Nothing here changes an answer except ``SessionStore`` (the optional
``/v1/ask`` sessions), which is per process by design: multi-worker
deployments should send history with chat completions instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragcache.backends.base import GenerationOptions
from ragcache.cache.warmer import Warmer, policy_for
from ragcache.config import Config, ServerConfig, load_config
from ragcache.errors import ConfigError
from ragcache.prompt import Message, assemble_prompt
from ragcache.server.http import APIError
from ragcache.server.metrics import ServerMetrics
from ragcache.server.openai_compat import ChatInputs
from ragcache.server.schemas import CorpusSummary
from ragcache.server.stream import GenerationStream

__all__ = ["WORKERS_ENV", "APIError", "Readiness", "ServerState", "SessionStore", "corpus_summary", "saved_usd"]

log = logging.getLogger("ragcache.server")
WORKERS_ENV = "RAGCACHE_SERVER_WORKERS"


class SessionStore:
    """``/v1/ask`` session histories, LRU-bounded, in this process only."""

    def __init__(self, max_sessions: int = 1024, max_messages: int = 64) -> None:
        self._sessions: OrderedDict[str, tuple[Message, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_sessions = max_sessions
        self.max_messages = max_messages

    def history(self, session_id: str) -> tuple[Message, ...]:
        with self._lock:
            return self._sessions.get(session_id, ())

    def append(self, session_id: str, question: str, answer: str) -> None:
        with self._lock:
            turns = (*self._sessions.pop(session_id, ()), Message("user", question), Message("assistant", answer))
            self._sessions[session_id] = turns[-self.max_messages :]
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)


@dataclass
class Readiness:
    """Per corpus: ``warming``, ``ready`` or ``failed: …``, and what each warm-up found."""

    states: dict[str, str] = field(default_factory=dict)
    warm: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def is_ready(self, name: str) -> bool:
        return self.states.get(name) == "ready"

    def all_ready(self) -> bool:
        return bool(self.states) and all(state == "ready" for state in self.states.values())

    def report(self) -> dict[str, str]:
        return dict(sorted(self.states.items()))


def _warmer(rag: Any) -> Warmer:
    cache = rag.config.cache
    return Warmer(rag.backend, policy_for(rag.backend, rag.config.backend.model, cache.ttl_s))


def _as_rags(target: Any) -> list[Any]:
    if target is None or isinstance(target, str | os.PathLike):
        target = load_config(target)
    if isinstance(target, Config):
        from ragcache.app import RagCache

        return [RagCache.from_config(target)]
    if isinstance(target, Mapping):
        return list(target.values())
    if isinstance(target, Sequence):
        return list(target)
    return [target]


@dataclass
class ServerState:
    rags: dict[str, Any]
    settings: ServerConfig
    metrics: ServerMetrics
    sessions: SessionStore
    readiness: Readiness
    api_keys: tuple[str, ...]
    warmers: dict[str, Warmer]

    @classmethod
    def create(cls, target: Any) -> ServerState:
        rags: dict[str, Any] = {}
        for rag in _as_rags(target):
            name = rag.corpus.name
            if name in rags:
                raise ConfigError(f"two served corpora are both named {name!r}; corpus names must be unique")
            rags[name] = rag
        if not rags:
            raise ConfigError("the server needs at least one corpus")
        settings = next(iter(rags.values())).config.server
        keys = os.environ.get(settings.api_keys_env, "")
        return cls(
            rags=rags,
            settings=settings,
            metrics=ServerMetrics(),
            sessions=SessionStore(max_messages=settings.max_history_messages),
            readiness=Readiness({name: "warming" for name in rags}),
            api_keys=tuple(key.strip() for key in keys.split(",") if key.strip()),
            warmers={name: _warmer(rag) for name, rag in rags.items()},
        )

    @property
    def default_corpus(self) -> str:
        return next(iter(self.rags))

    def rag(self, name: str) -> Any:
        """The facade serving corpus ``name`` (404 naming the valid ones otherwise)."""
        try:
            return self.rags[name]
        except KeyError:
            valid = ", ".join(sorted(self.rags))
            raise APIError(
                404,
                f"model {name!r} does not exist: models are corpus names ({valid})",
                param="model",
                code="model_not_found",
            ) from None

    def start_generation(self, rag: Any, inputs: ChatInputs, options: GenerationOptions) -> GenerationStream:
        """Start ``rag.stream`` in its own thread; the gauge falls when the engine stops."""
        gauge, cancelled = self.metrics.in_progress, self.metrics.cancelled

        def finished(was_cancelled: bool) -> None:
            gauge.dec()
            if was_cancelled:
                cancelled.labels("client_disconnect").inc()

        def make() -> Any:
            return rag.stream(inputs.question, context=inputs.context, history=inputs.history, options=options)

        gauge.inc()
        return GenerationStream(make, on_finish=finished).start()

    async def warm_all(self) -> None:
        """Warm every corpus's prefixes (when ``cache.warm_on_start``), then keep the busy ones warm."""
        for name, rag in self.rags.items():
            warmer = self.warmers[name]
            if rag.config.cache.warm_on_start:
                try:
                    results = await asyncio.to_thread(warmer.warm, rag.prefixes())
                except Exception as exc:
                    log.error("warming corpus %r failed: %s", name, exc)
                    self.readiness.states[name] = f"failed: {type(exc).__name__}: {exc}"
                    continue
                self.readiness.warm[name] = [r.to_dict() for r in results]
                errors = [r for r in results if r.status == "error"]
                for result in results:
                    log.info("warm %s: %s (%s)", result.label, result.status, result.detail)
                if errors:
                    self.readiness.states[name] = f"failed: {errors[0].label}: {errors[0].detail}"
                    continue
            self.readiness.states[name] = "ready"
            if rag.config.cache.keep_warm and _keep_warm_here(rag):
                warmer.start()
        self.metrics.sample(min_interval_s=0.0)

    def observe(self, name: str, answer: Any) -> float | None:
        """Count a finished answer in the metrics and the keep-warm traffic; return the saving."""
        rag = self.rags[name]
        saved = saved_usd(rag, answer)
        self.metrics.observe_answer(name, rag.backend.name, answer, saved)
        if answer.route is not None:
            prompt = assemble_prompt(rag.stable_segments(answer.route.block_ids), "", route=answer.route)
            self.warmers[name].record(prompt)
        return saved

    def close(self) -> None:
        for warmer in self.warmers.values():
            warmer.stop()
        for rag in self.rags.values():
            closer = getattr(rag, "close", None) or rag.backend.close
            with contextlib.suppress(Exception):
                closer()
        if self.metrics.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


def _keep_warm_here(rag: Any) -> bool:
    """Keep-warm runs once per deployment: in every worker for the per-process local
    store, in a single-worker server otherwise (with more, run ``ragcache warm``)."""
    workers = int(os.environ.get(WORKERS_ENV, "1") or 1)
    return rag.backend.name == "local" or workers <= 1


def saved_usd(rag: Any, answer: Any) -> float | None:
    """What the cache saved on this answer vs. the same tokens uncached (None if unpriced)."""
    from ragcache.cache.pricing import cost_of

    backend = rag.config.backend
    cost = cost_of(answer.usage, backend.model or answer.model or "", backend.kind)
    return cost.saving_usd if cost.priced else None


def corpus_summary(rag: Any, ready: bool) -> CorpusSummary:
    """The manifest of ``rag.corpus`` in brief, plus the prefixes the router can use."""
    manifest = rag.corpus.manifest
    return CorpusSummary(
        name=manifest.name,
        title=manifest.title,
        fingerprint=manifest.fingerprint,
        tokenizer=manifest.tokenizer,
        tokens=sum(c.tokens for c in manifest.categories),
        documents=len(manifest.documents),
        chunks=manifest.chunk_count,
        categories=[
            {"id": c.id, "title": c.title, "tokens": c.tokens, "blocks": list(c.block_ids)} for c in manifest.categories
        ],
        blocks=[
            {
                "id": b.id,
                "kind": b.kind,
                "sha256": b.sha256,
                "tokens": b.tokens,
                "bytes": b.bytes,
                "documents": len(b.documents),
            }
            for b in manifest.blocks
        ],
        prefixes=_prefixes(rag),
        ready=ready,
    )


def _prefixes(rag: Any) -> list[dict[str, Any]]:
    try:
        prompts = rag.prefixes()
    except Exception as exc:  # a summary must not fail because one part cannot be listed
        log.warning("listing prefixes of %r failed: %s", rag.corpus.name, exc)
        return []
    return [
        {
            "fingerprint": prompt.prefix_fingerprint,
            "blocks": [s.block_id for s in prompt.stable if s.block_id],
            "mode": prompt.route.mode if prompt.route is not None else None,
        }
        for prompt in prompts
    ]
