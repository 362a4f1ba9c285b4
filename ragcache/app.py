"""The RagCache facade: the whole pipeline wired in one place.

``RagCache.ask`` reads top to bottom: route the question to one of the
router's enumerable prefixes, build the prompt (stable segments from the
compiled corpus, then context, history, snippets and the question), let the
backend answer, and wrap what it did in an :class:`Answer`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragcache.backends.base import Backend, CacheUsage, Generation, GenerationOptions, create_backend
from ragcache.cache.pricing import Cost, price_usage
from ragcache.cache.warmset import TrafficLog, WarmSetLimits, parse_pins, router_guess, select_warm_set, traffic_path
from ragcache.config import Config, load_config
from ragcache.conversation import Conversation, ConversationPlanner, TurnPlan, stable_tokens
from ragcache.conversation_store import Conversations, ConversationStore, create_store
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.corpus.staleness import SourceChanges, source_changes
from ragcache.corpus.store import load_corpus
from ragcache.errors import BackendError, CorpusError
from ragcache.prompt import Message, Prompt, Route, Segment, SegmentKind, assemble_prompt
from ragcache.router import Router, create_router
from ragcache.text import check_text

__all__ = ["Answer", "ChatSession", "RagCache"]

log = logging.getLogger("ragcache.conversation")

# Stable blocks of a compiled corpus, in prompt order around the route's corpus blocks.
_BEFORE_CORPUS = (("instructions", SegmentKind.INSTRUCTIONS),)
_AFTER_CORPUS = (("tools", SegmentKind.TOOLS), ("examples", SegmentKind.EXAMPLES))


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
    turn: TurnPlan | None = None  # the conversation turn this answers (None: a prompt answered as given)

    @property
    def conversation(self) -> Conversation | None:
        """The conversation after this answer: pass it back (or use a :class:`ChatSession`) to continue."""
        return self.turn.conversation.answered(self.text) if self.turn is not None else None

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
            "conversation": self.turn.to_dict() if self.turn is not None else None,
        }


class RagCache:
    """A compiled corpus, a router and a backend: ``ask``, ``stream``, ``session``."""

    def __init__(
        self,
        config: Config,
        corpus: CompiledCorpus,
        backend: Backend,
        router: Router,
        store: ConversationStore | None = None,
    ) -> None:
        self.config = config
        self.corpus = corpus
        self.backend = backend
        self.router = router
        self._store = store
        self._conversations: Conversations | None = None
        self._conversations_lock = threading.Lock()
        self.stale: SourceChanges | None = None  # sources changed since the build (from_config checks)

    @property
    def conversations(self) -> Conversations:
        """Every conversation over this corpus: planned turns, remembered in ``conversation.store``
        (made on first use: it loads the corpus's tokenizer)."""
        with self._conversations_lock:
            if self._conversations is None:
                self._conversations = self._make_conversations()
            return self._conversations

    def _make_conversations(self) -> Conversations:
        settings = self.config.conversation
        planner = ConversationPlanner.for_corpus(
            self.corpus, self.router, settings, self.config.backend.max_output_tokens
        )
        planner.clock = time.monotonic
        store = self._store or create_store(settings.store, settings.max_conversations, settings.store_ttl_s)
        return Conversations(planner, store)

    @classmethod
    def from_config(
        cls,
        source: str | Path | Config | None = None,
        *,
        corpus: str | Path | None = None,
        backend: Backend | None = None,
        store: ConversationStore | None = None,
    ) -> RagCache:
        """Load the config (a path, a Config or the defaults), its compiled corpus, backend and router.

        ``backend``: an engine already loaded (several corpora served by one process share it, and a
        reloaded build keeps it, and its conversation ``store``). A build older than its sources is
        reported in ``stale`` (or refused: ``stale_build: fail``)."""
        config = source if isinstance(source, Config) else load_config(source)
        if corpus is not None:
            config = config.model_copy(update={"corpus": Path(corpus), "build_dir": None})
        compiled = load_corpus(config.resolved_build_dir() if config.build_dir else config.resolved_corpus())
        stale = None if config.stale_build == "off" else source_changes(config.resolved_corpus(), compiled)
        if stale is not None and config.stale_build == "fail":
            raise CorpusError(f"{stale.message()} (stale_build: fail)")
        owned = backend is None
        backend = create_backend(config.backend, config.cache) if backend is None else backend
        try:
            router = create_router(
                compiled,
                config.router,
                backend.capabilities,
                config.backend.max_output_tokens,
                profile=backend.profile,
            )
        except Exception:
            if owned:
                backend.close()
            raise
        rag = cls(config, compiled, backend, router, store)
        rag.stale = stale
        return rag

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
    ) -> Prompt:
        """One prompt for ``question`` (routed as a single question unless ``route`` is given), stable
        segments first; ``history`` is placed as given. Conversations use :meth:`plan_turn`."""
        if route is None:
            route = self.route(question, observe=True)
        stable = self.stable_segments(route.block_ids)
        return assemble_prompt(stable, question, route=route, context=context, history=tuple(history))

    def route(self, question: str, *, observe: bool = False) -> Route:
        """Where ``question`` goes on its own (blocks, tail, documents, tokens), without asking the backend."""
        # An observed question is priced on this process's clock, the one the warmer marks warm prefixes on.
        return self.router.route(question, observe=observe, now=time.monotonic() if observe else None)

    def plan_turn(
        self,
        question: str,
        *,
        context: str | None = None,
        history: Sequence[Message] = (),
        conversation: Conversation | None = None,
        observe: bool = True,
    ) -> TurnPlan:
        """The next turn of a conversation (conversation.py): of ``conversation`` when the caller holds
        it, else of ``history``, the conversation as a stateless client sends it (its own words and
        the answers it got); no history and no conversation: a new conversation. ``observe``: a new
        conversation's first question counts as router demand."""
        check_text(question, "question")  # every backend: text no engine can take is named here
        if context is not None:
            check_text(context, "context")
        for index, message in enumerate(history):
            check_text(message.content, f"history[{index}].content")
        conversations = self.conversations
        if conversation is not None:
            plan = conversations.plan(conversation, question, context=context, observe=observe)
        else:
            plan = conversations.plan_stateless(history, question, context=context, observe=observe)
        if plan.compaction is not None:
            log.info(
                "corpus %s: conversation turn %d compacted: %d turns' excerpts and %d oldest turns dropped "
                "(history %d -> %d tokens)",
                self.corpus.name, plan.turn, plan.compaction.snippet_turns, plan.compaction.dropped_turns,
                plan.compaction.tokens_before, plan.compaction.tokens_after,
            )  # fmt: skip
        return plan

    def turn_prompt(self, plan: TurnPlan) -> Prompt:
        """The prompt of a planned turn: its stable prefix, the session context the conversation holds,
        the history as sent, its excerpts, the question."""
        stable = self.stable_segments(plan.route.block_ids)
        return assemble_prompt(
            stable, plan.question, route=plan.route, context=plan.conversation.context, history=plan.history,
            conversation_id=plan.conversation.origin or None, cache_turn=plan.cache_turn,
        )  # fmt: skip

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
        return stable_tokens(self.corpus, blocks)

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
        conversation: Conversation | None = None,
    ) -> Answer:
        """Answer one turn: a new question, or the next turn of ``history`` (the conversation so far
        as the client saw it) or of ``conversation`` (``Answer.conversation`` of the previous turn)."""
        return _last_answer(
            self.stream(question, context=context, history=history, options=options, conversation=conversation)
        )

    async def aask(
        self,
        question: str,
        *,
        context: str | None = None,
        history: Sequence[Message] = (),
        options: GenerationOptions | None = None,
        conversation: Conversation | None = None,
    ) -> Answer:
        """:meth:`ask` in a worker thread."""
        return await asyncio.to_thread(
            self.ask, question, context=context, history=history, options=options, conversation=conversation
        )

    def stream(
        self,
        question: str,
        *,
        context: str | None = None,
        history: Sequence[Message] = (),
        options: GenerationOptions | None = None,
        conversation: Conversation | None = None,
    ) -> Iterator[str | Answer]:
        """Yield text deltas, then the final :class:`Answer` (arguments as :meth:`ask`)."""
        started = time.perf_counter()
        plan = self.plan_turn(question, context=context, history=history, conversation=conversation)
        yield from self.stream_turn(plan, options, started=started)

    def stream_turn(
        self, plan: TurnPlan, options: GenerationOptions | None = None, *, started: float
    ) -> Iterator[str | Answer]:
        """Answer a planned turn: deltas, then the :class:`Answer` (which carries the turn)."""
        for item in self.stream_prompt(self.turn_prompt(plan), options, started=started):
            yield dataclasses.replace(item, turn=plan) if isinstance(item, Answer) else item

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
            cost=price_usage(self.config.backend, generation.usage, generation.model, self.backend.profile),
            model=generation.model,
            finish_reason=generation.finish_reason,
        )

    def default_options(self) -> GenerationOptions:
        backend = self.config.backend
        return GenerationOptions(max_tokens=backend.max_output_tokens, temperature=backend.temperature)

    def session(self, context: str | None = None) -> ChatSession:
        """A multi-turn chat held here: each turn reuses the previous turn's prompt as its cached prefix."""
        return ChatSession(self, context)

    def close(self) -> None:
        self.backend.close()


class ChatSession:
    """A conversation held in this object (``ragcache chat``, the Python API): ask, ask again."""

    def __init__(self, rag: RagCache, context: str | None = None) -> None:
        self.rag = rag
        self.context = context
        self.conversation: Conversation | None = None

    @property
    def history(self) -> tuple[Message, ...]:
        """The history exactly as it will be sent with the next turn."""
        return self.conversation.history() if self.conversation is not None else ()

    def ask(self, question: str, *, options: GenerationOptions | None = None) -> Answer:
        return _last_answer(self.stream(question, options=options))

    def stream(self, question: str, *, options: GenerationOptions | None = None) -> Iterator[str | Answer]:
        """One turn: deltas, then the Answer; the turn joins the conversation once it finished."""
        started = time.perf_counter()
        plan = self.rag.plan_turn(question, context=self.context, conversation=self.conversation)
        for item in self.rag.stream_turn(plan, options, started=started):
            if isinstance(item, Answer):
                self.conversation = item.conversation
            yield item


def _last_answer(items: Iterator[str | Answer]) -> Answer:
    answer = None
    for item in items:
        if isinstance(item, Answer):
            answer = item
    if answer is None:
        raise BackendError("the generation ended without an answer")
    return answer
