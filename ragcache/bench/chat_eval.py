"""Conversation evaluation (``ragcache eval-chat``): ragcache's conversations against two top-k chat
patterns at equal cost, per context window. Pure and deterministic: no clock, no model call.

**Conversations** come from any QA file with gold documents, in two sets:

- *topical*: the items in file order, grouped by the category of their first gold document;
  each group's items are cut into conversations of ``turns`` questions (a shorter remainder of
  2+ questions is a conversation too, a single leftover is dropped), ordered by their first item;
- *shuffled*: the items shuffled with ``random.Random(SHUFFLE_SEED)`` (0), cut the same way.

Each set is replayed as its own run (a fresh router, a cold cache): its conversations one after
another, turn by turn, evenly spaced at ``rate_per_min``. **Answers are synthetic** and the same
for every strategy: ``f"(answer {conversation}.{turn}) " + "ok " * answer_tokens`` (distinct per
turn, about ``answer_tokens`` tokens), so the history grows as a real chat's does without a model.

**Strategies**: ``ragcache`` is the real :class:`~ragcache.conversation.ConversationPlanner`
(pinned stable prefix, history as sent, per-turn tail, compaction); ``ragcache_question_only``
is the same with ``conversation.query_turns = 0`` (the ablation of the follow-up query); the
two baselines (:mod:`ragcache.bench.chat_baselines`) get one top-k budget per window,
binary-searched so their $ per 1,000 turns equals ragcache's.

**Cost** replays every turn against the vendor's cache rules (:mod:`ragcache.cache.replay`): the
stable blocks, then each history message and the new user message as blocks (id = content hash,
tokens = count + 8), no uncached tail, so a turn's user message is written and read back by the
next turn as a breakpoint on the last message does. **Recall** is the share of the new question's
gold documents anywhere in the prompt (corpus blocks, excerpts in the history, new excerpts).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragcache.cache.replay import CacheRules, ReplayRequest, ReplayResult, arrivals, replay
from ragcache.conversation import MESSAGE_OVERHEAD, Conversation, ConversationPlanner
from ragcache.hashing import content_hash
from ragcache.prompt import INSTRUCTIONS_BLOCK
from ragcache.router.evaluate import QAItem, gold_recall, non_corpus_blocks

if TYPE_CHECKING:
    from ragcache.config import ConversationConfig
    from ragcache.corpus.manifest import CompiledCorpus
    from ragcache.router import Router

__all__ = [
    "SETS",
    "SHUFFLE_SEED",
    "ChatConversation",
    "TurnRecord",
    "build_conversations",
    "cut",
    "evaluate_chat",
    "message_block",
    "ragcache_records",
    "replay_sets",
    "strategy_figures",
    "synthetic_answer",
]

SETS = ("topical", "shuffled")
SHUFFLE_SEED = 0
Block = tuple[str, int]


@dataclass(frozen=True)
class ChatConversation:
    """One synthetic conversation: consecutive QA items asked one after another."""

    set: str
    index: int
    items: tuple[QAItem, ...]

    @property
    def name(self) -> str:
        return f"{self.set}-{self.index}"


@dataclass(frozen=True)
class TurnRecord:
    """One turn as a strategy sent it: replay blocks, the documents in the prompt, the question's gold."""

    set: str
    turn: int  # 1-based, within its conversation
    blocks: tuple[Block, ...]
    documents: frozenset[str]
    gold: tuple[str, ...]
    compacted: bool = False
    moved: bool = False
    excerpts: tuple[str, ...] = ()  # chunk ids of every excerpt in the prompt, history first (repeats kept)
    cached_turn: bool = True  # the new user message is written to the cache (else plain input this turn)

    @property
    def tokens(self) -> int:
        return sum(t for _, t in self.blocks)


def cut(items: Sequence[QAItem], turns: int) -> list[tuple[QAItem, ...]]:
    """``items`` in pieces of ``turns``; a shorter last piece is kept when it has 2+ questions."""
    pieces = [tuple(items[i : i + turns]) for i in range(0, len(items), turns)]
    return [p for p in pieces if len(p) == turns or len(p) >= 2]


def build_conversations(
    corpus: CompiledCorpus, items: Sequence[QAItem], turns: int
) -> dict[str, list[ChatConversation]]:
    """The two sets of the module docstring: topical (by first gold document's category) and shuffled."""
    if turns < 1:
        raise ValueError(f"turns must be at least 1, got {turns}")
    position = {id(item): n for n, item in enumerate(items)}
    groups: dict[str, list[QAItem]] = {}
    for item in items:
        groups.setdefault(corpus.documents[item.gold[0]].category, []).append(item)
    topical = sorted((p for g in groups.values() for p in cut(g, turns)), key=lambda p: position[id(p[0])])
    mixed = list(items)
    random.Random(SHUFFLE_SEED).shuffle(mixed)
    return {
        "topical": [ChatConversation("topical", n, p) for n, p in enumerate(topical)],
        "shuffled": [ChatConversation("shuffled", n, p) for n, p in enumerate(cut(mixed, turns))],
    }


def synthetic_answer(conversation: str, turn: int, tokens: int) -> str:
    """The stand-in answer (module docstring): deterministic, distinct per turn, ~``tokens`` tokens."""
    return f"(answer {conversation}.{turn}) " + "ok " * tokens


def message_block(role: str, text: str, count: Callable[[str], int]) -> Block:
    """A chat message as a replay block: its content hash and its tokens with the template allowance."""
    return (f"msg:{content_hash(role + chr(0) + text)[:24]}", count(text) + MESSAGE_OVERHEAD)


def stable_split(corpus: CompiledCorpus) -> tuple[tuple[Block, ...], tuple[Block, ...]]:
    """The non-corpus blocks before the corpus blocks (instructions) and after them (tools, examples),
    the order ``route_all`` of eval-router uses."""
    overhead = non_corpus_blocks(corpus)
    return (
        tuple(b for b in overhead if b[0] == INSTRUCTIONS_BLOCK),
        tuple(b for b in overhead if b[0] != INSTRUCTIONS_BLOCK),
    )


def ragcache_records(
    planner: ConversationPlanner,
    conversations: Sequence[ChatConversation],
    answer_tokens: int,
    rate_per_min: float | None = None,
) -> list[TurnRecord]:
    """Every turn of ``conversations`` planned by the real planner (observe=True), answered synthetically.

    With ``rate_per_min`` the planner runs on the replay's clock (each turn at its arrival time, as
    :func:`replay_sets` charges it) and every turn's prefix is marked warm when sent, as the server
    does, so first turns are routed by the cache state the replay itself has (router v4)."""
    corpus, count = planner.corpus, planner.count_tokens
    head, rest = stable_split(corpus)
    times = iter(arrivals(sum(len(c.items) for c in conversations), rate_per_min) if rate_per_min else ())
    now = 0.0
    if rate_per_min:
        planner.clock = lambda: now
    out = []
    for conversation in conversations:
        state: Conversation | None = None
        for turn, item in enumerate(conversation.items, start=1):
            now = next(times, now)
            plan = planner.plan(state, item.question)
            mark_warm = getattr(planner.router, "mark_warm", None)  # the server's warmer hook (router v4)
            if rate_per_min and plan.route.block_ids and mark_warm is not None:
                mark_warm(plan.route.block_ids, now)
            corpus_blocks = tuple((b, corpus.block(b).tokens) for b in plan.route.block_ids)
            messages = tuple(message_block(m.role, m.content, count) for m in plan.history)
            blocks = (*head, *corpus_blocks, *rest, *messages, message_block("user", plan.user_text, count))
            documents = frozenset(plan.route.documents) | frozenset(plan.conversation.sent_documents())
            compacted = plan.compaction is not None
            excerpts = tuple(s.chunk_id for e in plan.conversation.exchanges for s in e.snippets)
            out.append(
                TurnRecord(
                    conversation.set, turn, blocks, documents, item.gold, compacted, plan.moved, excerpts,
                    plan.cache_turn,
                )
            )  # fmt: skip
            state = plan.conversation.answered(synthetic_answer(conversation.name, turn, answer_tokens))
    return out


def replay_sets(
    records: Sequence[TurnRecord], rules: CacheRules, rate_per_min: float, cached_blocks: int | None = None
) -> dict[str, ReplayResult]:
    """Each set's turns replayed as its own cold run, in order, evenly spaced. Every block may be
    cached (a breakpoint on the last message), or with ``cached_blocks`` only the first that many
    (no breakpoint after them: the rest is plain input)."""
    out = {}
    for name in SETS:
        turns = [r for r in records if r.set == name]
        times = arrivals(len(turns), rate_per_min)
        requests = (
            ReplayRequest(t, r.blocks, 0)
            if cached_blocks is None and r.cached_turn
            else ReplayRequest(t, r.blocks[:-1], r.blocks[-1][1])
            if cached_blocks is None
            else ReplayRequest(t, r.blocks[:cached_blocks], sum(n for _, n in r.blocks[cached_blocks:]))
            for t, r in zip(times, turns, strict=True)
        )
        out[name] = replay(requests, rules)
    return out


def usd_per_1k(costs: dict[str, ReplayResult]) -> float:
    """Dollars per 1,000 turns over every set."""
    requests = sum(c.requests for c in costs.values())
    return 1000.0 * sum(c.usd for c in costs.values()) / requests if requests else 0.0


def _figures(records: Sequence[TurnRecord], costs: Sequence[ReplayResult]) -> dict[str, Any]:
    inputs = sum(c.input_tokens for c in costs)
    requests = sum(c.requests for c in costs)
    return {
        "turns": len(records),
        "recall": round(statistics.fmean(gold_recall(r.documents, r.gold) for r in records), 4),
        "hit_rate": round(statistics.fmean(bool(r.documents & set(r.gold)) for r in records), 4),
        "cached_share": round(sum(c.cached_read_tokens for c in costs) / inputs, 4) if inputs else 0.0,
        "prompt_tokens_mean": round(statistics.fmean(r.tokens for r in records), 1),
        "usd_per_1k_turns": round(1000.0 * sum(c.usd for c in costs) / requests, 4) if requests else 0.0,
        "compactions": sum(r.compacted for r in records),
    }


def strategy_figures(records: Sequence[TurnRecord], costs: dict[str, ReplayResult], turns: int) -> dict[str, Any]:
    """Combined figures, per-turn-index recall (turn 1..N), and the same figures per set."""
    out = _figures(records, list(costs.values()))
    out["recall_by_turn"] = [
        round(statistics.fmean(gold_recall(r.documents, r.gold) for r in at), 4) if at else None
        for at in ([r for r in records if r.turn == n] for n in range(1, turns + 1))
    ]
    out["by_set"] = {name: _figures([r for r in records if r.set == name], [costs[name]]) for name in SETS}
    return out


def planner_source() -> str:
    """SHA-256 prefix of ragcache/conversation.py as it ran: which planner a report measured."""
    import ragcache.conversation

    return content_hash(Path(ragcache.conversation.__file__).read_bytes())[:16]


def _ragcache(
    corpus: CompiledCorpus,
    make_router: Callable[[int], Router],
    window: int,
    sets: dict[str, list[ChatConversation]],
    settings: ConversationConfig,
    reserved_output: int,
    answer_tokens: int,
    rate_per_min: float,
) -> tuple[list[TurnRecord], ConversationPlanner]:
    records, planner = [], None
    for name in SETS:  # each set is its own run: a fresh router (no demand from the other set)
        planner = ConversationPlanner.for_corpus(corpus, make_router(window), settings, reserved_output)
        records += ragcache_records(planner, sets[name], answer_tokens, rate_per_min)
    assert planner is not None
    return records, planner


def evaluate_chat(
    corpus: CompiledCorpus,
    sets: dict[str, list[ChatConversation]],
    make_router: Callable[[int], Router],
    windows: Sequence[int],
    *,
    settings: ConversationConfig,
    reserved_output: int,
    rules: CacheRules,
    rate_per_min: float,
    answer_tokens: int,
    turns: int,
) -> dict[str, Any]:
    """The report of ``ragcache eval-chat --json``: every strategy at every window."""
    from ragcache.bench.chat_baselines import Baselines, turn_queries

    if not windows or min(windows) <= 0:
        raise ValueError(f"windows must be positive token counts, got {list(windows)}")
    if not any(sets.values()):
        raise ValueError("no conversations: the QA file has too few questions for conversations of 2+ turns")
    ablation = settings.model_copy(update={"query_turns": 0})
    queries = None
    rows = []
    for window in sorted(set(windows)):
        records, planner = _ragcache(
            corpus, make_router, window, sets, settings, reserved_output, answer_tokens, rate_per_min
        )
        costs = replay_sets(records, rules, rate_per_min)
        ours = strategy_figures(records, costs, turns)
        ours["moves"] = sum(r.moved for r in records)
        only, _ = _ragcache(corpus, make_router, window, sets, ablation, reserved_output, answer_tokens, rate_per_min)
        queries = queries if queries is not None else turn_queries(planner, sets)
        baselines = Baselines(planner, queries, answer_tokens, rules, rate_per_min)
        row: dict[str, Any] = {"window": window, "ragcache": ours}
        row["ragcache_question_only"] = strategy_figures(only, replay_sets(only, rules, rate_per_min), turns)
        for name in ("topk_in_system", "topk_after_history"):
            row[name] = baselines.at_equal_cost(name, ours["usd_per_1k_turns"], turns)
        rows.append(row)
    return {
        "corpus": corpus.name,
        "corpus_tokens": corpus.total_tokens,
        "conversations": sum(len(s) for s in sets.values()),
        "turns": turns,
        "sets": {
            name: {"conversations": len(sets[name]), "turns": sum(len(c.items) for c in sets[name])} for name in SETS
        },
        "shuffle_seed": SHUFFLE_SEED,
        "planner_sha256": planner_source(),
        "answer_tokens": answer_tokens,
        "vendor_model": rules.model,
        "cache_ttl_s": rules.ttl_s,
        "rate_per_min": rate_per_min,
        "windows": rows,
    }
