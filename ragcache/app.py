"""The RagCache facade: the whole pipeline wired in one place.

``RagCache.ask`` reads top to bottom: route the question to one of the
router's enumerable prefixes, build the prompt (stable segments from the
compiled corpus, then context, history, snippets and the question), let the
backend answer, and wrap what it did in an :class:`Answer`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ragcache.backends.base import Backend, CacheUsage, Generation, GenerationOptions, create_backend
from ragcache.cache.pricing import Cost, price_usage
from ragcache.cache.warmset import TrafficLog, WarmSetLimits, parse_pins, router_guess, select_warm_set, traffic_path
from ragcache.config import Config, load_config
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.corpus.store import load_corpus
from ragcache.errors import BackendError
from ragcache.prompt import Message, Prompt, Route, Segment, SegmentKind, assemble_prompt
from ragcache.router import Router, create_router

__all__ = ["Answer", "ChatSession", "RagCache"]

# Stable blocks of a compiled corpus, in prompt order around the route's corpus blocks.
_BEFORE_CORPUS = (("instructions", SegmentKind.INSTRUCTIONS),)
_AFTER_CORPUS = (("tools", SegmentKind.TOOLS), ("examples", SegmentKind.EXAMPLES))
_SENT_TURNS = 1024  # user turns whose route is remembered for stateless chats (each holds its tail)


class _SentTurns:
    """The routes recent user turns were sent with, by (session blocks, question), bounded LRU.

    A stateless chat re-renders its earlier user turns from here instead of routing each
    one again on every request (cost would grow with the conversation). A miss (another
    worker, a restart, an evicted turn) is routed once more: routing is deterministic.
    """

    def __init__(self, size: int = _SENT_TURNS) -> None:
        self._routes: OrderedDict[tuple[tuple[str, ...] | None, str], Route] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    @staticmethod
    def _key(session: Route | None, question: str) -> tuple[tuple[str, ...] | None, str]:
        return (session.block_ids if session is not None else None, question)

    def get(self, session: Route | None, question: str) -> Route | None:
        key = self._key(session, question)
        with self._lock:
            route = self._routes.get(key)
            if route is not None:
                self._routes.move_to_end(key)
            return route

    def put(self, session: Route | None, question: str, route: Route) -> None:
        key = self._key(session, question)
        with self._lock:
            self._routes[key] = route
            self._routes.move_to_end(key)
            while len(self._routes) > self._size:
                self._routes.popitem(last=False)


@dataclass(frozen=True)
class Answer:
    """One answer and what it took: route, sources, cache usage, timings, cost.

    ``cost`` is None when the backend's model has no list price (unpriced, never guessed).
    """

    text: str
    route: Route | None
    sources: tuple[str, ...]
    usage: CacheUsage
    ttft_s: float
    latency_s: float
    cost: Cost | None
    model: str = ""
    finish_reason: str = "stop"
    user_text: str = ""  # the final user turn exactly as sent (snippets, then the question): session history

    @property
    def cost_usd(self) -> float | None:
        """USD for this answer (None: unpriced)."""
        return self.cost.usd if self.cost is not None else None

    @property
    def saved_usd(self) -> float | None:
        """What the cache saved against the same tokens uncached (None: unpriced)."""
        return self.cost.saved_usd if self.cost is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The ``ragcache ask --json`` object."""
        return {
            "answer": self.text,
            "route": self.route.to_dict() if self.route is not None else None,
            "sources": list(self.sources),
            "usage": self.usage.to_dict(),
            "ttft_s": round(self.ttft_s, 4),
            "latency_s": round(self.latency_s, 4),
            "cost_usd": self.cost_usd,
        }


class RagCache:
    """A compiled corpus, a router and a backend: ``ask``, ``stream``, ``session``."""

    def __init__(self, config: Config, corpus: CompiledCorpus, backend: Backend, router: Router) -> None:
        self.config = config
        self.corpus = corpus
        self.backend = backend
        self.router = router
        self._sent_turns = _SentTurns()

    @classmethod
    def from_config(cls, source: str | Path | Config | None = None, *, corpus: str | Path | None = None) -> RagCache:
        """Load the config (a path, a Config or the defaults), its compiled corpus, backend and router."""
        config = source if isinstance(source, Config) else load_config(source)
        if corpus is not None:
            config = config.model_copy(update={"corpus": Path(corpus), "build_dir": None})
        compiled = load_corpus(config.resolved_build_dir() if config.build_dir else config.resolved_corpus())
        backend = create_backend(config.backend, config.cache)
        try:
            router = create_router(
                compiled,
                config.router,
                backend.capabilities,
                config.backend.max_output_tokens,
            )
        except Exception:
            backend.close()
            raise
        return cls(config, compiled, backend, router)

    # --- prompts ----------------------------------------------------------------

    def stable_segments(self, block_ids: Sequence[str]) -> tuple[Segment, ...]:
        """Instructions, the corpus blocks, tools, examples: the stable prefix for ``block_ids``."""
        def stable(pairs: tuple[tuple[str, SegmentKind], ...]) -> list[Segment]:
            return [Segment(kind, self.corpus.block_text(bid), bid) for bid, kind in pairs if bid in self.corpus.blocks]

        corpus = [Segment(SegmentKind.CORPUS, self.corpus.block_text(bid), bid) for bid in block_ids]
        return (*stable(_BEFORE_CORPUS), *corpus, *stable(_AFTER_CORPUS))

    def prompt_for(
        self,
        question: str,
        *,
        context: str | None = None,
        history: Sequence[Message] = (),
        route: Route | None = None,
        previous: Route | None = None,
    ) -> Prompt:
        """The prompt for ``question``: routed (unless ``route`` is given), stable segments first."""
        if route is None:
            route = self.route(question, previous, observe=True)
            self._sent_turns.put(previous, question, route)
        stable = self.stable_segments(route.block_ids)
        return assemble_prompt(stable, question, route=route, context=context, history=tuple(history))

    def route(self, question: str, session: ChatSession | Route | None = None, *, observe: bool = False) -> Route:
        """Where ``question`` goes (blocks, tail, documents, tokens) without asking the backend; in a
        session (a :class:`ChatSession` or its last route) it keeps the session's blocks, so every
        turn reuses the same prefix and the history after it."""
        previous = session.route if isinstance(session, ChatSession) else session
        route = self.router.route(question, previous, observe=observe)
        if previous is None or route.block_ids == previous.block_ids or not previous.block_ids:
            return route
        return replace(route, mode=previous.mode, block_ids=previous.block_ids, sticky=True,
                       reason=f"kept the session's blocks (the question alone routes to {'+'.join(route.block_ids)})")

    def session_from_history(self, history: Sequence[Message]) -> tuple[tuple[Message, ...], Route | None]:
        """A stateless chat's session: earlier user turns re-rendered exactly as they were sent
        (with the snippets they were sent with) and the route of the first user turn, which every
        later turn keeps. Turns this process sent are remembered, so a request routes only its new one."""
        session: Route | None = None
        sent = []
        for message in history:
            if message.role != "user":
                sent.append(message)
                continue
            turn = self._sent_turn(message.content, session)
            session = session or turn
            sent.append(Message("user", Prompt((), message.content, snippets=turn.snippets).user_text))
        return tuple(sent), session

    def _sent_turn(self, question: str, session: Route | None) -> Route:
        """The route a user turn was sent with: remembered, else routed again (not new demand)."""
        route = self._sent_turns.get(session, question)
        if route is None:
            route = self.route(question, session)
            self._sent_turns.put(session, question, route)
        return route

    def prefixes(self) -> list[Prompt]:
        """A stable-only prompt for every prefix the router can emit."""
        return [self.prefix_prompt(blocks) for blocks in self.router.prefixes()]

    def prefix_prompt(self, blocks: Sequence[str]) -> Prompt:
        """The stable-only prompt (what a warm-up sends) of one prefix."""
        full = getattr(self.router, "mode", None) == "full"
        mode = "full" if full else "blocks"
        return assemble_prompt(self.stable_segments(blocks), "", route=Route(mode, tuple(blocks)))

    def retire_stale_caches(self, also_live: Iterable[str] = ()) -> list[str]:
        """Delete the backend's caches of prefixes this build no longer emits (a rebuild replaced them;
        Gemini bills their storage until they expire): every prefix the router can emit stays, and
        ``also_live`` (warm-set pins, other corpora on the same key and namespace). Deleted names."""
        return self.backend.retire(itertools.chain((p.prefix_fingerprint for p in self.prefixes()), also_live))

    # --- the warm set (cache/warmset.py) -----------------------------------------

    @property
    def traffic_file(self) -> Path:
        """This corpus's traffic log (``cache.traffic_dir``)."""
        return traffic_path(self.config.cache.traffic_dir, self.corpus.fingerprint)

    def load_traffic(self) -> TrafficLog:
        """The persisted traffic log (empty where none yet)."""
        return TrafficLog.load(self.traffic_file, self.corpus.fingerprint, self.config.cache.warm_half_life_requests)

    def warm_set(self, traffic: TrafficLog | None = None) -> list[Prompt]:
        """The prefixes to warm: pins, then traffic (else the router's guess), capped by ``cache.warm_max_*``."""
        cache = self.config.cache
        order = self.corpus.category_block_ids()
        full = (self.corpus.full_block_id,) if self.corpus.full_block_id else tuple(order)
        chosen = select_warm_set(
            pins=parse_pins(cache.warm_pins, order, full),
            traffic=traffic if traffic is not None else self.load_traffic(),
            guess=lambda n: router_guess(self.router, self.router.prefixes, n),
            tokens_of=self.prefix_tokens_estimate,
            limits=WarmSetLimits(cache.warm_max_prefixes, cache.warm_max_tokens, tuple(cache.warm_pins)),
            known_blocks=frozenset(self.corpus.blocks),
        )
        return [self.prefix_prompt(blocks) for blocks in chosen]

    def prefix_tokens_estimate(self, blocks: Sequence[str]) -> int:
        """The manifest's token count of a prefix (its blocks and the non-corpus blocks around them)."""
        ids = [*blocks, *(b for b, _ in (*_BEFORE_CORPUS, *_AFTER_CORPUS) if b in self.corpus.blocks)]
        return sum(self.corpus.blocks[b].tokens for b in ids if b in self.corpus.blocks)

    def sources(self, prompt: Prompt) -> tuple[str, ...]:
        """Documents of the prompt's corpus blocks, then those of its snippets."""
        blocks = [s.block_id for s in prompt.stable if s.kind == SegmentKind.CORPUS and s.block_id]
        docs = dict.fromkeys(self.corpus.documents_of(blocks))
        docs.update(dict.fromkeys(s.doc_id for s in prompt.snippets))
        return tuple(docs)

    # --- answering --------------------------------------------------------------

    def ask(
        self,
        question: str,
        *,
        context: str | None = None,
        history: Sequence[Message] = (),
        options: GenerationOptions | None = None,
        previous: Route | None = None,
    ) -> Answer:
        """Answer one question (``history``: earlier turns exactly as sent)."""
        answer = None
        for item in self.stream(question, context=context, history=history, options=options, previous=previous):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    async def aask(
        self,
        question: str,
        *,
        context: str | None = None,
        history: Sequence[Message] = (),
        options: GenerationOptions | None = None,
    ) -> Answer:
        """:meth:`ask` in a worker thread."""
        return await asyncio.to_thread(self.ask, question, context=context, history=history, options=options)

    def stream(
        self,
        question: str,
        *,
        context: str | None = None,
        history: Sequence[Message] = (),
        options: GenerationOptions | None = None,
        previous: Route | None = None,
    ) -> Iterator[str | Answer]:
        """Yield text deltas, then the final :class:`Answer`."""
        started = time.perf_counter()
        prompt = self.prompt_for(question, context=context, history=history, previous=previous)
        yield from self.stream_prompt(prompt, options, started=started)

    def stream_prompt(
        self, prompt: Prompt, options: GenerationOptions | None = None, *, started: float | None = None
    ) -> Iterator[str | Answer]:
        """Answer an already built prompt: deltas, then the :class:`Answer`."""
        started = time.perf_counter() if started is None else started
        routed_at = time.perf_counter()
        generation: Generation | None = None
        for item in self.backend.stream(prompt, options or self.default_options()):
            if isinstance(item, Generation):
                generation = item
            else:
                yield item
        if generation is None:
            raise BackendError(f"backend {self.backend.name!r} ended its stream without a final generation")
        yield Answer(
            text=generation.text,
            route=prompt.route,
            sources=self.sources(prompt),
            usage=generation.usage,
            ttft_s=(routed_at - started) + generation.ttft_s,
            latency_s=time.perf_counter() - started,
            cost=price_usage(self.config.backend, generation.usage, generation.model),
            model=generation.model,
            finish_reason=generation.finish_reason,
            user_text=prompt.user_text,
        )

    def default_options(self) -> GenerationOptions:
        backend = self.config.backend
        return GenerationOptions(max_tokens=backend.max_output_tokens, temperature=backend.temperature)

    def session(self, context: str | None = None) -> ChatSession:
        """A multi-turn chat whose history goes after the stable prefix (turn N+1 reuses turn N's KV)."""
        return ChatSession(self, context)

    def close(self) -> None:
        self.backend.close()


class ChatSession:
    """Keeps history exactly as it was sent (user turn with snippets, then the answer) and the last route."""

    def __init__(self, rag: RagCache, context: str | None = None) -> None:
        self.rag = rag
        self.context = context
        self.history: tuple[Message, ...] = ()
        self.route: Route | None = None

    def ask(self, question: str, *, options: GenerationOptions | None = None) -> Answer:
        answer = None
        for item in self.stream(question, options=options):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def stream(self, question: str, *, options: GenerationOptions | None = None) -> Iterator[str | Answer]:
        """One turn: deltas, then the Answer; the turn joins the history once it finished."""
        started = time.perf_counter()
        prompt = self.rag.prompt_for(question, context=self.context, history=self.history, previous=self.route)
        for item in self.rag.stream_prompt(prompt, options, started=started):
            if isinstance(item, Answer):
                self.history += (Message("user", prompt.user_text), Message("assistant", item.text))
                self.route = item.route
            yield item

