"""The two top-k chat baselines of ``eval-chat``, at a per-turn excerpt budget, and their equal-cost search.

- **topk_in_system** (LlamaIndex ``ContextChatEngine``): each turn the system message is the
  instructions plus this turn's top-k excerpts; the history is the raw questions and answers (no
  excerpts), truncated from the oldest turn to fit. Documents: this turn's excerpts only.
- **topk_after_history**: instructions, the history as sent (earlier turns with their excerpts),
  then this turn's excerpts and question. When the turn's excerpts do not fit, earlier turns'
  excerpts go first, then the oldest turns (ragcache's compaction order). Documents: every excerpt
  in the prompt; an excerpt already in the prompt is never sent again.

Both retrieve with ragcache's own query (the planner's ``query()``: the new question plus the
recent ones, weighted) over the router's fused dense+BM25 scores, so they are the strongest
versions of those patterns. The budget ``k`` counts the rendered excerpt message (its header and
each ``[doc id]`` excerpt, counted per chunk with the corpus tokenizer); a turn takes the best
chunks, best first, while they fit (eval-router's top-k). Both get the planner's usable room:
window − reserved output − the planner's safety margin. Each is charged the cheaper of two cache
layouts over the whole run: a breakpoint on the last message (as ragcache), or none after the
instructions (top-k in the system message changes the prefix every turn, so writing it at 1.25x
would buy nothing). The excerpt block of ``topk_in_system`` is rendered in corpus order, so the
same excerpts give the same bytes (generous: a retriever's score order would not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ragcache.bench.chat_eval import (
    SETS,
    Block,
    ChatConversation,
    TurnRecord,
    message_block,
    replay_sets,
    stable_split,
    strategy_figures,
    synthetic_answer,
    usd_per_1k,
)
from ragcache.conversation import MESSAGE_OVERHEAD, Conversation
from ragcache.hashing import canonical_json, content_hash
from ragcache.prompt import estimate_margin, render_snippets

if TYPE_CHECKING:
    from ragcache.cache.replay import CacheRules, ReplayResult
    from ragcache.conversation import ConversationPlanner

__all__ = ["STRATEGIES", "Baselines", "TurnQuery", "turn_queries"]

STRATEGIES = ("topk_in_system", "topk_after_history")
_SEARCH_STEPS = 40


@dataclass(frozen=True)
class TurnQuery:
    """One turn's question and its chunk ranking under ragcache's retrieval query."""

    set: str
    conversation: str
    turn: int
    question: str
    gold: tuple[str, ...]
    order: np.ndarray  # chunk indexes, best first


@dataclass
class _Exchange:
    question: str
    picks: tuple[int, ...]
    answer: str


def turn_queries(planner: ConversationPlanner, sets: dict[str, list[ChatConversation]]) -> list[TurnQuery]:
    """Every turn's ranking for the planner's query (the new question plus the recent ones)."""
    keep = planner.settings.query_turns
    out = []
    for name in SETS:
        for conversation in sets[name]:
            asked: list[str] = []
            for turn, item in enumerate(conversation.items, start=1):
                state = Conversation("topk", (), questions=tuple(asked[-keep:]) if keep else ())
                fused = planner.router.fused_scores(planner.query(state, item.question))
                order = planner.router.ranking(fused).astype(np.int32)
                out.append(TurnQuery(name, conversation.name, turn, item.question, item.gold, order))
                asked.append(item.question)
    return out


class Baselines:
    """Replays both baselines at any budget; ``at_equal_cost`` finds the budget matching a target $/1k."""

    def __init__(
        self,
        planner: ConversationPlanner,
        queries: list[TurnQuery],
        answer_tokens: int,
        rules: CacheRules,
        rate_per_min: float,
    ) -> None:
        corpus, self.count = planner.corpus, planner.count_tokens
        head, rest = stable_split(corpus)
        self.stable = (*head, *rest)
        self.stable_tokens = sum(t for _, t in self.stable)
        self.usable = planner.window - planner.reserved_output - estimate_margin(planner.window)  # as the planner
        self.queries, self.answer_tokens = queries, answer_tokens
        self.rules, self.rate = rules, rate_per_min
        chunks = corpus.chunks
        self.sizes = np.array([self.count(f"[{c.doc_id}]\n{c.text.strip()}") + 1 for c in chunks], dtype=np.int64)
        self.header = self.count(render_snippets(())) + 1
        self.doc_of = [c.doc_id for c in chunks]
        self.chunk_ids = [c.id for c in chunks]

    @property
    def cap(self) -> int:
        """The largest budget any turn could use: the usable room less the stable blocks."""
        return max(self.usable - self.stable_tokens, 0)

    def records(self, strategy: str, budget: int) -> list[TurnRecord]:
        """Every turn of ``strategy`` at ``budget`` excerpt tokens per turn."""
        run = self._in_system if strategy == "topk_in_system" else self._after_history
        out: list[TurnRecord] = []
        start = 0
        while start < len(self.queries):
            end = start
            while end < len(self.queries) and self.queries[end].conversation == self.queries[start].conversation:
                end += 1
            out += run(self.queries[start:end], budget)
            start = end
        return out

    def costs(self, strategy: str, budget: int) -> tuple[dict[str, ReplayResult], str]:
        """The replay of the cheaper cache layout at ``budget``: a breakpoint on the last message, or
        none after the instructions (where the prompt changes every turn, writes would never be read)."""
        records = self.records(strategy, budget)
        layouts = {
            "last_message": replay_sets(records, self.rules, self.rate),
            "instructions_only": replay_sets(records, self.rules, self.rate, cached_blocks=len(self.stable)),
        }
        best = min(layouts, key=lambda name: (usd_per_1k(layouts[name]), name))
        return layouts[best], best

    def cost(self, strategy: str, budget: int) -> float:
        return usd_per_1k(self.costs(strategy, budget)[0])

    def equal_cost_budget(self, strategy: str, target: float) -> tuple[int, bool]:
        """The largest budget whose $/1k turns is at most ``target``; (0, False) when even 0 costs more."""
        low, high = 0, self.cap
        if self.cost(strategy, high) <= target:
            return high, True
        if self.cost(strategy, low) > target:
            return 0, False
        for _ in range(_SEARCH_STEPS):
            if high - low <= 1:
                break
            mid = (low + high) // 2
            low, high = (mid, high) if self.cost(strategy, mid) <= target else (low, mid)
        return low, True

    def at_equal_cost(self, strategy: str, target: float, turns: int) -> dict[str, Any]:
        """The strategy's figures at the budget that costs ``target`` $ per 1,000 turns."""
        budget, matched = self.equal_cost_budget(strategy, target)
        costs, layout = self.costs(strategy, budget)
        out = strategy_figures(self.records(strategy, budget), costs, turns)
        out["cache_layout"] = layout
        out["budget_tokens"] = budget
        out["cost_matched"] = matched  # False: even no excerpts at all cost more than ragcache
        return out

    # --- the two patterns -------------------------------------------------------------

    def _pick(self, order: np.ndarray, tokens: int, excluded: set[int] | None = None) -> tuple[int, ...]:
        """The best chunks (not ``excluded``), best first, while their excerpt tokens fit ``tokens``."""
        if tokens <= self.header:
            return ()
        if excluded:
            order = order[~np.isin(order, np.fromiter(excluded, dtype=np.int32))]
        total = np.cumsum(self.sizes[order])
        k = int(np.searchsorted(total, tokens - self.header, side="right"))
        return tuple(int(i) for i in order[:k])

    def _excerpts(self, picks: tuple[int, ...]) -> int:
        return self.header + int(self.sizes[list(picks)].sum()) if picks else 0

    def _message(self, role: str, text: str) -> Block:
        return message_block(role, text, self.count)

    def _in_system(self, turns: list[TurnQuery], budget: int) -> list[TurnRecord]:
        history: list[tuple[str, str]] = []
        out = []
        for q in turns:
            room = self.usable - self.stable_tokens - (self.count(q.question) + MESSAGE_OVERHEAD)
            picks = self._pick(q.order, min(budget, room))
            left = room - self._excerpts(picks)
            kept: list[Block] = []
            for question, answer in reversed(history):  # newest first, while the pair fits
                pair = [self._message("user", question), self._message("assistant", answer)]
                if pair[0][1] + pair[1][1] > left:
                    break
                kept, left = pair + kept, left - pair[0][1] - pair[1][1]
            system = (
                ((f"sys:{content_hash(canonical_json(sorted(picks)))[:24]}", self._excerpts(picks)),) if picks else ()
            )
            blocks = (*self.stable, *system, *kept, self._message("user", q.question))
            documents = frozenset(self.doc_of[i] for i in picks)
            excerpts = tuple(self.chunk_ids[i] for i in picks)
            out.append(
                TurnRecord(q.set, q.turn, blocks, documents, q.gold, len(kept) < 2 * len(history), False, excerpts)
            )
            history.append((q.question, synthetic_answer(q.conversation, q.turn, self.answer_tokens)))
        return out

    def _user(self, question: str, picks: tuple[int, ...]) -> Block:
        """The user message of question + excerpts: id from its content, tokens as rendered."""
        body = canonical_json(["user", question, [self.chunk_ids[i] for i in sorted(picks)]])
        return (f"msg:{content_hash(body)[:24]}", self.count(question) + MESSAGE_OVERHEAD + self._excerpts(picks))

    def _history(self, exchanges: list[_Exchange]) -> int:
        return sum(self._user(e.question, e.picks)[1] + self._message("assistant", e.answer)[1] for e in exchanges)

    def _after_history(self, turns: list[TurnQuery], budget: int) -> list[TurnRecord]:
        exchanges: list[_Exchange] = []
        out = []
        for q in turns:
            free = self.usable - self.stable_tokens - (self.count(q.question) + MESSAGE_OVERHEAD)
            want = min(budget, free)
            compacted = free - self._history(exchanges) < want
            if compacted:  # earlier turns' excerpts first, then the oldest turns
                exchanges = [_Exchange(e.question, (), e.answer) for e in exchanges]
                while exchanges and free - self._history(exchanges) < want:
                    exchanges = exchanges[1:]
            sent = {i for e in exchanges for i in e.picks}
            picks = self._pick(q.order, min(budget, free - self._history(exchanges)), sent)
            messages = [
                b for e in exchanges for b in (self._user(e.question, e.picks), self._message("assistant", e.answer))
            ]
            blocks = (*self.stable, *messages, self._user(q.question, picks))
            documents = frozenset(self.doc_of[i] for i in (*sent, *picks))
            excerpts = tuple(self.chunk_ids[i] for i in (*(i for e in exchanges for i in e.picks), *picks))
            out.append(TurnRecord(q.set, q.turn, blocks, documents, q.gold, compacted, excerpts=excerpts))
            exchanges.append(_Exchange(q.question, picks, synthetic_answer(q.conversation, q.turn, self.answer_tokens)))
        return out
