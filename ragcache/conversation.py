"""A conversation, in one place: the history exactly as sent, its pinned route, each turn's budget.

Invariant 6 of docs/architecture.md ("Conversations" there has the rules and the
figures): turn N+1's prompt begins with turn N's prompt as sent, so every turn
reads the stable prefix *and* the history from the cache. Here:

- **The route is pinned.** The first turn is routed like a single question; later
  turns keep its blocks (the stable prefix) and get a tail of new excerpts after
  the history. A conversation moves to another run only at a turn that re-anchors
  (its history is sent anew anyway), and only when
  :meth:`~ragcache.router.Router.preferred_run` says the new question is clearly
  elsewhere; that decision depends on the questions alone.
- **Each turn is budgeted from the real history.** With ``usable`` = window −
  reserved output − context, the stable prefix S, the history as sent H and the
  question Q, a *later* turn's tail is at most ``turn_tail_share`` of the window
  and whatever room is left. An *anchor* turn (the first, a compaction, a move)
  fills the window but leaves ``growth_share`` of it free for the turns to come;
  a re-anchoring turn planned as ``walk`` (not a follow-up) fills it all, since its
  successor is as likely to move on again. The first turn keeps the router's own
  excerpts whole when they fit: the router chose its blocks with them.
- **Excerpts are budgeted as sent** (:meth:`ConversationPlanner.excerpt_tokens`): their text, each
  one's ``[doc id]`` header line, separators and heading, counted on the rendered user turn. The
  router picks by the chunks' own tokens, so each pick is repeated within a smaller budget until it
  fits (:meth:`ConversationPlanner._fitted`); short chunks with long ids no longer overflow the window.
- **How a later turn takes its excerpts** (``excerpts``): ``fixed`` keeps the cache with its
  tail; ``walk`` keeps it only while the prompt holds what top-k at the prompt's read price
  would (:meth:`~ragcache.router.Router.walk_tail`), else re-anchors; ``auto`` (the default)
  is ``fixed`` for a follow-up (that walk completes within the fixed tail) and ``walk`` for
  anything else.
- **Compaction** happens when a later turn would not get its whole tail. First the
  excerpts of the turns after the last anchor go; when that leaves this turn and the
  next their tails, the anchor turn stays whole and everything up to its answer stays
  cached. Otherwise every excerpt goes, then (if still short) the oldest turns, until
  the turn has its tail and room to grow again (``growth_share`` of the window, at
  most half of what the prefix and question leave), and it becomes the new anchor.
  The stable prefix is never touched, so it stays cached.
  Only when the stable prefix, context and question alone exceed the window is
  the turn refused (:class:`~ragcache.errors.ContextLengthError`, naming sizes).
- **Which turns are written** to a cache with explicit breakpoints
  (:meth:`ConversationPlanner.writes`): a later turn unless it walked and compacted;
  an anchor while the anchors seen so far were read back by their next turn often
  enough to repay the write premium.
- **The retrieval query** is the new question plus the ``query_turns`` previous
  user questions, weighted ``query_decay`` per step back and by how little the new
  question says on its own (:func:`context_need`; no model call).

Planning is a pure function of (corpus, settings, pinned route, the conversation's
own words), so a stateless client's earlier turns are re-derived byte for byte by
any worker; :class:`~ragcache.conversation_store.Conversations` remembers each
planned turn in a store (this process, or Redis shared by all workers) so a
request plans only its new turn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ragcache.config import DEFAULT_MODEL
from ragcache.errors import ConfigError, ContextLengthError, ModelError
from ragcache.hashing import canonical_json, content_hash
from ragcache.prompt import (
    NON_CORPUS_BLOCKS,
    Message,
    Route,
    RouteMode,
    Snippet,
    estimate_margin,
    render_user_turn,
)

if TYPE_CHECKING:
    import numpy as np

    from ragcache.config import ConversationConfig
    from ragcache.corpus.manifest import CompiledCorpus
    from ragcache.router import Router

__all__ = [
    "Compaction",
    "Conversation",
    "ConversationPlanner",
    "Exchange",
    "TurnPlan",
    "context_need",
    "stable_tokens",
    "token_counter",
]

MESSAGE_OVERHEAD = 8  # chat-template tokens around one message (role header, end marker), rounded up
FORMAT = 2  # the stored conversation's format
SELF_CONTAINED_TERMS = 6  # distinct content words from which a question retrieves on its own


@dataclass(frozen=True)
class Exchange:
    """One turn as it was sent: the user's own words, the excerpts sent before them, the answer."""

    question: str
    snippets: tuple[Snippet, ...] = ()
    answer: str | None = None  # None: the turn is being answered
    anchor: bool = False  # its excerpts filled the window (first turn, re-anchored): kept longest

    @property
    def user_text(self) -> str:
        return render_user_turn(self.snippets, self.question)

    def messages(self) -> tuple[Message, ...]:
        user = Message("user", self.user_text)
        return (user,) if self.answer is None else (user, Message("assistant", self.answer))


@dataclass(frozen=True)
class Conversation:
    """A conversation between turns: its pinned route, its turns as they will be sent next, counters."""

    mode: RouteMode
    block_ids: tuple[str, ...]
    context: str | None = None
    exchanges: tuple[Exchange, ...] = ()
    turns: int = 0  # turns planned so far (dropped ones included)
    compactions: int = 0
    questions: tuple[str, ...] = ()  # the latest user questions, for the retrieval query
    origin: str = ""  # names the conversation for its whole life (its first words), whatever compaction drops

    def history(self) -> tuple[Message, ...]:
        """Every exchange as sent (the last one without its answer while it is being answered)."""
        return tuple(m for exchange in self.exchanges for m in exchange.messages())

    def answered(self, answer: str) -> Conversation:
        """The same conversation once its current turn has ``answer``."""
        if not self.exchanges or self.exchanges[-1].answer is not None:
            raise ValueError("the conversation has no turn waiting for an answer")
        last = replace(self.exchanges[-1], answer=answer)
        return replace(self, exchanges=(*self.exchanges[:-1], last))

    def sent_documents(self) -> tuple[str, ...]:
        """Documents of the excerpts still in the history."""
        return tuple(dict.fromkeys(s.doc_id for e in self.exchanges for s in e.snippets))

    def to_json(self, fingerprint: str) -> str:
        """Canonical JSON (excerpts by chunk id); ``fingerprint`` ties it to one build of the corpus."""
        body = {
            "format": FORMAT,
            "corpus": fingerprint,
            "mode": self.mode,
            "blocks": list(self.block_ids),
            "context": self.context,
            "exchanges": [
                {"q": e.question, "chunks": [s.chunk_id for s in e.snippets], "a": e.answer, "anchor": e.anchor}
                for e in self.exchanges
            ],
            "turns": self.turns,
            "compactions": self.compactions,
            "questions": list(self.questions),
            "origin": self.origin,
        }
        return canonical_json(body)

    @classmethod
    def from_json(cls, text: str, corpus: CompiledCorpus, chunks: dict[str, Snippet]) -> Conversation | None:
        """The stored conversation, or None when it belongs to another build or format (re-derive it)."""
        try:
            body = json.loads(text)
            if body.get("format") != FORMAT or body.get("corpus") != corpus.fingerprint:
                return None
            exchanges = tuple(
                Exchange(str(e["q"]), tuple(chunks[c] for c in e["chunks"]), e["a"], bool(e["anchor"]))
                for e in body["exchanges"]
            )
            return cls(
                body["mode"],
                tuple(body["blocks"]),
                body["context"],
                exchanges,
                int(body["turns"]),
                int(body["compactions"]),
                tuple(body["questions"]),
                str(body["origin"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Compaction:
    """What a compaction removed from the history: excerpts of earlier turns, then whole turns.

    ``reanchored`` is False when dropping the later turns' excerpts was enough: the anchor turn
    (with its excerpts) stays, and so does everything cached up to its answer.
    """

    snippet_turns: int
    dropped_turns: int
    tokens_before: int
    tokens_after: int
    reanchored: bool = True

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "snippet_turns": self.snippet_turns,
            "dropped_turns": self.dropped_turns,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "reanchored": self.reanchored,
        }


@dataclass(frozen=True)
class TurnPlan:
    """What one turn sends: its route (pinned blocks + this turn's tail) and the history before it."""

    conversation: Conversation  # after this turn is sent; its last exchange waits for the answer
    route: Route
    question: str
    history: tuple[Message, ...]
    history_tokens: int
    tail_budget: int
    anchor: bool
    compaction: Compaction | None = None
    moved: bool = False
    rederived: int = 0  # earlier turns this request had to re-derive (no store held them)
    walking: bool = False  # planned as ``walk`` (the setting, or ``auto``'s choice): the next turn often re-anchors
    # Whether a backend with explicit breakpoints writes this turn's user message to the cache now
    # (:meth:`ConversationPlanner.writes`; docs/architecture.md, "Which turns are written to the cache").
    cache_turn: bool = True

    @property
    def turn(self) -> int:
        return self.conversation.turns

    @property
    def user_text(self) -> str:
        return self.conversation.exchanges[-1].user_text

    def to_dict(self) -> dict[str, Any]:
        """The ``conversation`` object of an answer's metadata."""
        return {
            "turn": self.turn,
            "history_tokens": self.history_tokens,
            "tail_budget": self.tail_budget,
            "anchor": self.anchor,
            "cache_turn": self.cache_turn,
            "moved": self.moved,
            "compacted": self.compaction.to_dict() if self.compaction is not None else None,
            "compactions": self.conversation.compactions,
            "rederived_turns": self.rederived,
            "history_documents": list(self.conversation.sent_documents()),
        }


@dataclass(frozen=True)
class _Sizes:
    usable: int  # window − reserved output − context − safety
    stable: int
    question: int
    history: int

    @property
    def room(self) -> int:
        return self.usable - self.stable - self.history - self.question


@dataclass
class ConversationPlanner:
    """Plans turns (module docstring); pure apart from the first turn's demand count."""

    corpus: CompiledCorpus
    router: Router
    settings: ConversationConfig
    window: int
    reserved_output: int
    count_tokens: Callable[[str], int]
    stable_tokens: Callable[[Sequence[str]], int]
    # The caller's clock (s): a new conversation's first route is priced by the cache state the router
    # observed on it (docs/architecture.md "Router"); None: by its demand prior.
    clock: Callable[[], float] | None = None
    # What the next turn did with an anchor turn, over this planner's live (observed) turns: read it back
    # or dropped it (re-anchored, moved). :meth:`writes` decides from it whether an anchor is written.
    anchors_kept: int = 0
    anchors_dropped: int = 0

    @classmethod
    def for_corpus(
        cls, corpus: CompiledCorpus, router: Router, settings: ConversationConfig, reserved_output: int
    ) -> ConversationPlanner:
        """A planner counting with the corpus's own tokenizer and manifest (what ``RagCache`` and
        ``eval-chat`` use)."""
        return cls(corpus, router, settings, router.window, reserved_output, token_counter(corpus),
                   lambda blocks: stable_tokens(corpus, blocks))  # fmt: skip

    def plan(
        self, conversation: Conversation | None, question: str, *, context: str | None = None, observe: bool = True
    ) -> TurnPlan:
        """The next turn of ``conversation`` (None: a new one) asking ``question``."""
        first = conversation is None or conversation.turns == 0
        after_anchor = not first and observe and bool(conversation.exchanges) and conversation.exchanges[-1].anchor
        routed = None
        if conversation is None or first:
            now = self.clock() if observe and self.clock is not None else None
            routed = self.router.route(question, observe=observe, now=now)
            origin = content_hash(canonical_json([context, question]))[:24]
            conversation = Conversation(routed.mode, routed.block_ids, context, origin=origin)
        fused = None if conversation.mode == "full" else self.router.fused_scores(self.query(conversation, question))
        sizes = self._sizes(conversation, question, context)
        self._check_fits(conversation, sizes)
        tail_cap = 0 if conversation.mode == "full" else int(self.settings.turn_tail_share * self.window)
        compaction, snippets, moved = None, None, False
        excerpts = self._excerpts(conversation, question, fused, first, min(tail_cap, sizes.room))
        # room kept free at an anchor for the turns to come (module docstring)
        growth = int(self.settings.growth_share * self.window) if first or excerpts != "walk" else 0
        if not first:  # a later turn: its excerpts after the history, compacting if it must
            snippets = self._follow(conversation, question, fused, sizes, tail_cap, excerpts)
            if snippets is None:
                conversation, compaction, snippets = self._compact(
                    conversation, question, fused, sizes, tail_cap, growth, excerpts
                )
                sizes = self._sizes(conversation, question, context)
            if snippets is None and fused is not None and conversation.mode != "full":
                now = self.clock() if observe and self.clock is not None else None
                conversation, moved = self._move(conversation, fused, sizes, growth, now, excerpts)  # history anew
                sizes = self._sizes(conversation, question, context)
                self._check_fits(conversation, sizes)
                if moved and sizes.room < tail_cap:  # the new run is larger: drop more of the oldest turns
                    conversation, more = self._reanchor(conversation, sizes, tail_cap, growth)
                    compaction = (
                        more
                        if compaction is None
                        else replace(
                            compaction,
                            dropped_turns=compaction.dropped_turns + more.dropped_turns,
                            tokens_after=more.tokens_after,
                        )
                    )
                    sizes = self._sizes(conversation, question, context)
        anchor = snippets is None
        if after_anchor:  # did this turn keep the anchor before it?
            if moved or (compaction is not None and compaction.reanchored):
                self.anchors_dropped += 1
            else:
                self.anchors_kept += 1
        budget = max(min(tail_cap, sizes.room), sizes.room - growth, 0)
        if anchor:  # first turn, a move or a re-anchoring compaction: fill, leaving room to grow
            snippets = () if fused is None else self._fitted(self._tail_pick(fused, conversation), budget, question)[0]
            # a first turn: the router's blocks were chosen with its own excerpts (a superset of top-k at their
            # price): keep them whole, with less room to grow, rather than pin the blocks without their tail
            chosen = routed.snippets if routed is not None else ()
            if self.excerpt_tokens(chosen, question) > sizes.room:  # as many as fit as sent, the best first
                chosen = self._fitted(_best_of(chosen), sizes.room, question)[0] or ()
            chosen_tokens = self.excerpt_tokens(chosen, question)
            if self.excerpt_tokens(snippets, question) < chosen_tokens <= sizes.room:
                snippets, budget = chosen, chosen_tokens
        else:
            budget = self.excerpt_tokens(snippets or (), question)
        assert snippets is not None
        route = self.router.make_route(
            conversation.mode, conversation.block_ids, snippets, self._reason(conversation, first, moved, compaction),
            sticky=not first and not moved,
        )  # fmt: skip
        history = conversation.history()
        keep = self.settings.query_turns
        after = replace(
            conversation,
            context=context,
            exchanges=(*conversation.exchanges, Exchange(question, snippets, anchor=anchor)),
            turns=conversation.turns + 1,
            compactions=conversation.compactions + (compaction is not None),
            questions=(*conversation.questions, question)[-keep:] if keep else (),
        )
        walking = excerpts == "walk"
        return TurnPlan(after, route, question, history, sizes.history, budget, anchor, compaction, moved,
                        walking=walking, cache_turn=self.writes(anchor, walking, compaction))  # fmt: skip

    def writes(self, anchor: bool, walking: bool, compaction: Compaction | None) -> bool:
        """Whether a backend with explicit breakpoints writes this turn's user message to the cache now.

        Written, it costs the write premium now and is read back (at the read price) by a next turn that
        keeps it; sent as plain input, a next turn that keeps it writes it then. Writing pays when the
        next turn keeps it at least premium / (write − read) of the time (0.25 / 1.15 under Anthropic's
        prices; always with no premium). A later turn's next turn keeps it unless it walks and compacted
        (``walk`` then often re-anchors again); whether an *anchor* is kept depends on the traffic (a
        follow-up keeps it, an unrelated question re-anchors), so anchors go by the share this planner
        has seen kept, from a uniform prior (docs/architecture.md, "Which turns are written")."""
        if not anchor:
            return not walking or compaction is None
        premium = self.router.write_price - 1.0
        if premium <= 0:
            return True
        kept = (self.anchors_kept + 1) / (self.anchors_kept + self.anchors_dropped + 2)
        return kept >= premium / (self.router.write_price - self.router.read_price)

    def _excerpts(
        self, conversation: Conversation, question: str, fused: np.ndarray | None, first: bool, tail: int
    ) -> str:
        """How this turn takes its excerpts: the setting, except ``auto``, which follows up (``fixed``) when
        the prompt and a ``tail`` of new excerpts already hold what top-k at the prompt's read price would
        (the walk completes within the fixed tail), and walks otherwise (module docstring)."""
        if self.settings.excerpts != "auto":
            return self.settings.excerpts
        if first or fused is None:
            return "fixed"
        carried, allowance = self._carried(conversation)
        premium = self.router.write_price - 1.0
        walk = self._walk_pick(fused, conversation, carried, allowance, premium, 0)
        return "fixed" if self._fitted(walk, max(tail, 0), question)[0] is not None else "walk"

    def excerpt_tokens(self, snippets: Sequence[Snippet], question: str) -> int:
        """What ``snippets`` add to the user turn asking ``question`` as it is sent: their text, each one's
        header line and separators and the excerpts' heading (``render_user_turn``), by this planner's count."""
        if not snippets:
            return 0
        return self.count_tokens(render_user_turn(tuple(snippets), question)) - self.count_tokens(question)

    def _fitted(
        self, pick: Callable[[int], tuple[Snippet, ...] | None], limit: int, question: str
    ) -> tuple[tuple[Snippet, ...] | None, int]:
        """Excerpts that fit ``limit`` tokens as sent (:meth:`excerpt_tokens`), and the budget that picked them.

        ``pick(tokens)`` chooses excerpts within ``tokens`` of the chunks' own tokens (the router's measure;
        None: none fit, e.g. a walk that does not complete). Until its pick fits ``limit`` as rendered, it is
        asked again within its chunks' tokens scaled by ``limit`` / its rendered cost (always less than the
        last budget), so this ends, at worst with no excerpt; deterministic (docs/architecture.md,
        "Conversations")."""
        tokens = limit
        while True:
            snippets = pick(tokens)
            if not snippets:
                return snippets, tokens
            cost = self.excerpt_tokens(snippets, question)
            if cost <= limit:
                return snippets, tokens
            tokens = min(tokens - 1, sum(s.tokens for s in snippets) * limit // cost)

    def _tail_pick(
        self, fused: np.ndarray, conversation: Conversation, exclude: frozenset[str] = frozenset()
    ) -> Callable[[int], tuple[Snippet, ...] | None]:
        """The router's best chunks outside the pinned blocks (and ``exclude``) within a budget."""
        return lambda tokens: self.router.tail(fused, conversation.block_ids, tokens, exclude)

    def _walk_pick(
        self,
        fused: np.ndarray,
        conversation: Conversation,
        carried: frozenset[str],
        allowance: float,
        premium: float,
        depth: int,
        room: int | None = None,
    ) -> Callable[[int], tuple[Snippet, ...] | None]:
        """The walk's excerpts (``Router.walk_tail``) or None when it does not complete: within a budget of
        room (``room`` None), else within ``room``, topped up to a budget with the next best chunks."""

        def pick(tokens: int) -> tuple[Snippet, ...] | None:
            within, minimum = (tokens, 0) if room is None else (room, tokens)
            snippets, complete = self.router.walk_tail(
                fused, conversation.block_ids, carried, allowance, within, minimum, premium, depth
            )
            return snippets if complete else None

        return pick

    def _carried(self, conversation: Conversation) -> tuple[frozenset[str], float]:
        """The chunks the prompt already carries as excerpts, and what reading the prompt's corpus part
        costs (in uncached tokens): the money a top-k prompt of the same price would spend on its own."""
        carried = {s.chunk_id: s.tokens for e in conversation.exchanges for s in e.snippets}
        corpus_tokens = sum(self.corpus.blocks[b].tokens for b in conversation.block_ids if b in self.corpus.blocks)
        return frozenset(carried), self.router.read_price * (corpus_tokens + sum(carried.values()))

    def query(self, conversation: Conversation, question: str) -> list[tuple[str, float]]:
        """The retrieval query: the question, then the recent ones, each step back weighted ``query_decay``
        and by how little the question says on its own (:func:`context_need`)."""
        earlier = conversation.questions[-self.settings.query_turns :] if self.settings.query_turns else ()
        need = context_need(question)
        weights = [need * self.settings.query_decay**step for step in range(1, len(earlier) + 1)]
        return [(question, 1.0), *((q, w) for q, w in zip(reversed(earlier), weights, strict=True) if w > 0)]

    def _sizes(self, conversation: Conversation, question: str, context: str | None) -> _Sizes:
        safety = estimate_margin(self.window)
        context_tokens = self.count_tokens(context) + MESSAGE_OVERHEAD if context else 0
        usable = self.window - self.reserved_output - context_tokens - safety
        stable = self.stable_tokens(conversation.block_ids) + MESSAGE_OVERHEAD
        question_tokens = self.count_tokens(question) + MESSAGE_OVERHEAD
        return _Sizes(usable, stable, question_tokens, self._history_tokens(conversation))

    def _history_tokens(self, conversation: Conversation) -> int:
        return sum(self.count_tokens(m.content) + MESSAGE_OVERHEAD for m in conversation.history())

    def _check_fits(self, conversation: Conversation, sizes: _Sizes) -> None:
        if sizes.stable + sizes.question <= sizes.usable:
            return
        raise ContextLengthError(
            f"turn {conversation.turns + 1}: the stable prefix ({sizes.stable} tokens) and the question "
            f"({sizes.question} tokens) do not fit the {self.window}-token context window with "
            f"{self.window - sizes.usable} tokens reserved for the answer ({self.reserved_output}) and the session "
            f"context; the history ({sizes.history} tokens) can be compacted, these parts cannot: shorten the "
            "question or the context"
        )

    def _move(
        self,
        conversation: Conversation,
        fused: np.ndarray,
        sizes: _Sizes,
        growth: int,
        now: float | None,
        excerpts: str,
    ) -> tuple[Conversation, bool]:
        """At a re-anchoring turn, where the conversation goes. ``fixed``: the run the question is clearly
        in (``Router.preferred_run``), if another. ``walk``: the run that holds what top-k at the same
        price would, within what the window leaves after the history (``Router.reanchor_run``): the
        pinned one while it does, else another, else none (the conversation goes on as top-k)."""
        if excerpts == "fixed":
            if conversation.mode != "blocks":
                return conversation, False
            target = self.router.preferred_run(fused, conversation.block_ids)
        else:
            instructions = self.stable_tokens(()) + MESSAGE_OVERHEAD
            room = sizes.usable - instructions - sizes.history - sizes.question
            target = self.router.reanchor_run(fused, conversation.block_ids, max(room - growth, room // 2), now)
        if target is None or tuple(target) == tuple(conversation.block_ids):
            return conversation, False
        return replace(conversation, mode="blocks" if target else "topk", block_ids=tuple(target)), True

    def _follow(
        self,
        conversation: Conversation,
        question: str,
        fused: np.ndarray | None,
        sizes: _Sizes,
        tail_cap: int,
        excerpts: str,
    ) -> tuple[Snippet, ...] | None:
        """A later turn's excerpts (module docstring), or None when they do not fit the room left."""
        if sizes.room < tail_cap or sizes.room < 0:
            return None
        if fused is None:  # the whole corpus is in the prompt: nothing to add
            return ()
        carried, allowance = self._carried(conversation)
        if excerpts == "fixed":  # the share caps the chunks' own tokens; what is sent must fit the room left
            pick = self._tail_pick(fused, conversation, carried)
            return self._fitted(lambda tokens: pick(min(tokens, tail_cap)), sizes.room, question)[0]
        # at least what the conversation's anchor turn got: every turn holds the top of its own ranking
        depth = next((sum(s.tokens for s in e.snippets) for e in reversed(conversation.exchanges) if e.anchor), 0)
        premium = self.router.write_price - 1.0
        walk = self._walk_pick(fused, conversation, carried, allowance, premium, depth)
        walked, room = self._fitted(walk, sizes.room, question)  # the walk itself, within the room as rendered
        cost = self.excerpt_tokens(walked or (), question)
        if walked is None or cost >= tail_cap:
            return walked
        # topped up with the next best chunks to the fixed tail, as rendered (the walk's own chunks stay)
        top_up = self._walk_pick(fused, conversation, carried, allowance, premium, depth, room)
        return self._fitted(top_up, tail_cap, question)[0]

    def _compact(
        self,
        conversation: Conversation,
        question: str,
        fused: np.ndarray | None,
        sizes: _Sizes,
        tail_cap: int,
        growth: int,
        excerpts: str,
    ) -> tuple[Conversation, Compaction, tuple[Snippet, ...] | None]:
        """Make room, oldest first (module docstring). First the excerpts of the turns after the
        last anchor: enough when this turn's walk then fits, and everything up to the anchor's
        answer stays cached. Else every excerpt, then the oldest turns, until the turn has its
        excerpts and room to grow; this turn becomes the new anchor (no excerpts returned)."""
        last = max((i for i, e in enumerate(conversation.exchanges) if e.anchor and e.snippets), default=-1)
        if last >= 0 and last < len(conversation.exchanges) - 1:
            kept = tuple(e if i <= last else replace(e, snippets=()) for i, e in enumerate(conversation.exchanges))
            light = replace(conversation, exchanges=kept)
            history = self._history_tokens(light)
            snippets = self._follow(light, question, fused, replace(sizes, history=history), tail_cap, excerpts)
            if snippets is not None:
                dropped = sum(1 for e in conversation.exchanges[last + 1 :] if e.snippets)
                return light, Compaction(dropped, 0, sizes.history, history, reanchored=False), snippets
        return (*self._reanchor(conversation, sizes, tail_cap, growth), None)

    def _reanchor(
        self, conversation: Conversation, sizes: _Sizes, tail_cap: int, growth: int
    ) -> tuple[Conversation, Compaction]:
        """Every excerpt goes, then the oldest turns, until the turn has its excerpts and room to grow."""
        room = sizes.usable - sizes.stable - sizes.question  # with no history at all
        wanted = tail_cap + min(growth, room // 2)
        snippet_turns = sum(1 for e in conversation.exchanges if e.snippets)
        exchanges = tuple(replace(e, snippets=(), anchor=False) for e in conversation.exchanges)
        history = self._history_tokens(replace(conversation, exchanges=exchanges))
        dropped = 0
        while exchanges and room - history < wanted:
            exchanges, dropped = exchanges[1:], dropped + 1
            history = self._history_tokens(replace(conversation, exchanges=exchanges))
        return replace(conversation, exchanges=exchanges), Compaction(snippet_turns, dropped, sizes.history, history)

    @staticmethod
    def _reason(conversation: Conversation, first: bool, moved: bool, compaction: Compaction | None) -> str:
        turn = conversation.turns + 1
        if first:
            return f"turn 1: routed ({conversation.mode}); later turns keep this prefix"
        if moved and not conversation.block_ids:
            return f"turn {turn}: left its run for top-k (no run holds what top-k would at the same price)"
        if moved:
            return f"turn {turn}: moved to {'+'.join(conversation.block_ids)} (the question is clearly elsewhere)"
        if compaction is not None:
            kept = "" if compaction.reanchored else ", the anchor turn kept"
            return (
                f"turn {turn}: kept the prefix; compacted the history ({compaction.snippet_turns} turns' excerpts, "
                f"{compaction.dropped_turns} oldest turns dropped{kept})"
            )
        return f"turn {turn}: kept the conversation's prefix; new excerpts after the history"


def _best_of(snippets: tuple[Snippet, ...]) -> Callable[[int], tuple[Snippet, ...]]:
    """The best-scored of ``snippets`` within a budget of their own tokens (one too big for what is left is
    skipped, as the router's top-k does), in their own order (so the same set renders the same bytes)."""

    def pick(tokens: int) -> tuple[Snippet, ...]:
        kept, left = set(), tokens
        for i in sorted(range(len(snippets)), key=lambda i: (-snippets[i].score, i)):
            if snippets[i].tokens <= left:
                kept.add(i)
                left -= snippets[i].tokens
        return tuple(s for i, s in enumerate(snippets) if i in kept)

    return pick


def context_need(question: str) -> float:
    """How much a question leans on the ones before it: 1 with no content word ("And then?"),
    falling to 0 at ``SELF_CONTAINED_TERMS`` distinct content words (it names its own subject).

    Mixing earlier questions into a self-contained one only dilutes its retrieval (measured
    by ``ragcache eval-chat``'s question-only ablation, docs/bench/chat); a short follow-up
    ("And how do I close it again?") needs them.
    """
    from ragcache.router.index import tokenize

    return max(0.0, 1.0 - len(set(tokenize(question))) / SELF_CONTAINED_TERMS)


def token_counter(corpus: CompiledCorpus) -> Callable[[str], int]:
    """Counts with the corpus's build tokenizer (the local model's own by default); a tokenizer that
    cannot be loaded here (an ``hf:`` folder elsewhere) falls back to the 4-characters estimate."""
    from ragcache.corpus.tokens import get_tokenizer

    name = str(corpus.manifest.settings.get("tokenizer", DEFAULT_MODEL))
    try:
        return get_tokenizer(name).count
    except (ConfigError, ModelError):
        return get_tokenizer("chars").count


def stable_tokens(corpus: CompiledCorpus, block_ids: Sequence[str]) -> int:
    """The manifest's tokens of a stable prefix: its corpus blocks and the instructions, tools, examples."""
    ids = [*block_ids, *(b for b in NON_CORPUS_BLOCKS if b in corpus.blocks)]
    return sum(corpus.blocks[b].tokens for b in ids if b in corpus.blocks)
