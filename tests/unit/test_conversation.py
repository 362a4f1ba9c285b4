"""Conversations (ragcache/conversation.py): every turn fits, keeps the previous turn's bytes,
compacts from the oldest end, and says exactly what it sent.

The corpus is a real build of the four-topic corpus with the real all-MiniLM-L6-v2 index,
routed by the real HybridRouter; the backend is never called (planning is pure), answers
are fixed strings the test stands in for.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from router_corpus import build_topics

from ragcache.app import RagCache
from ragcache.backends.base import Capabilities
from ragcache.config import BackendConfig, Config, ConversationConfig, RouterConfig
from ragcache.conversation import Conversation, Exchange, TurnPlan, context_need
from ragcache.conversation_store import MemoryStore, create_store
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.errors import ConfigError, ContextLengthError
from ragcache.prompt import NON_CORPUS_BLOCKS, Message, Snippet
from ragcache.router.policy import HybridRouter

OUT = 60
ROUTER = RouterConfig(history_allowance=0, snippet_tokens=64)
TURNS = [
    "How deep should tomato seeds be sown?",
    "And how often should I water them?",
    "Do they need sun?",
    "What about compost?",
    "When are they ready to pick?",
    "How does a telescope magnify faint galaxies?",  # a clear change of topic
    "And what is a red giant?",
    "How long should bread dough be kneaded?",
    "And how hot should the oven be?",
    "What happens in the TCP three-way handshake?",
]
ANSWER = "ok " * 30


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CompiledCorpus:
    return build_topics(tmp_path_factory.mktemp("conversation")).corpus


def make_rag(corpus: CompiledCorpus, window: int, mode: str = "auto", **settings: Any) -> RagCache:
    routing = ROUTER.model_copy(update={"mode": mode})
    config = Config(router=routing, backend=BackendConfig(max_output_tokens=OUT), conversation=settings)
    router = HybridRouter(corpus, routing, Capabilities(context_window=window), OUT)
    return RagCache(config, corpus, None, router)  # type: ignore[arg-type]


def play(rag: RagCache, turns: list[str], answer: str = ANSWER) -> Iterator[TurnPlan]:
    """The turns of one conversation held by the caller (as ``RagCache.session`` holds it)."""
    conversation: Conversation | None = None
    for question in turns:
        plan = rag.plan_turn(question, conversation=conversation)
        yield plan
        conversation = plan.conversation.answered(answer)


def prompt_tokens(rag: RagCache, plan: TurnPlan) -> int:
    """The prompt's size by the corpus tokenizer, with the planner's per-message allowance."""
    prompt = rag.turn_prompt(plan)
    planner = rag.conversations.planner
    return sum(planner.count_tokens(m["content"]) + 8 for m in prompt.messages())


@pytest.mark.parametrize("window", [900, 1400, 2400])
def test_every_turn_fits_and_begins_with_the_previous_turn_as_sent(corpus: CompiledCorpus, window: int) -> None:
    rag = make_rag(corpus, window)
    plans = list(play(rag, TURNS))
    for before, plan in itertools.pairwise(plans):
        assert prompt_tokens(rag, plan) + OUT <= window
        expected = (*before.history, Message("user", before.user_text), Message("assistant", ANSWER))
        if plan.compaction is None:
            assert plan.history == expected  # turn N+1 begins with turn N's prompt, byte for byte
        elif plan.compaction.reanchored:
            assert plan.anchor and plan.history != expected
        else:  # the later turns' excerpts went: everything up to the anchor turn's answer is unchanged
            anchor = max(i for i, e in enumerate(before.conversation.exchanges) if e.anchor)
            kept = 2 * (anchor + 1)
            assert plan.history[:kept] == expected[:kept] and plan.history != expected and not plan.anchor
        if not plan.moved:
            assert plan.route.block_ids == before.route.block_ids and plan.route.sticky
    compacted = [p for p in plans if p.compaction is not None]
    assert plans[-1].conversation.compactions == len(compacted)
    assert [p.turn for p in plans] == list(range(1, len(TURNS) + 1))


def test_compaction_drops_excerpts_first_then_the_oldest_turns_never_the_prefix(corpus: CompiledCorpus) -> None:
    rag = make_rag(corpus, 900)
    plans = list(play(rag, TURNS, answer="ok " * 60))
    compacted = [p for p in plans if p.compaction is not None and not p.moved]
    assert compacted, "long answers must force a compaction in a 900-token window"
    for plan in compacted:
        before = plans[plan.turn - 2]
        assert plan.route.block_ids == before.route.block_ids  # the stable prefix is untouched
        kept = plan.history
        with_excerpts = [m for m in kept if "Additional excerpts" in m.content]
        if plan.compaction.reanchored:
            assert not with_excerpts  # every excerpt went before any turn
        else:  # only the anchor turn keeps its excerpts, and no turn was dropped
            assert len(with_excerpts) <= 1 and plan.compaction.dropped_turns == 0
        asked = [m.content.rsplit("\n\n", 1)[-1] for m in kept if m.role == "user"]
        assert asked == TURNS[plan.turn - 1 - len(asked) : plan.turn - 1]  # the most recent turns stay, in order
        assert plan.compaction.tokens_after < plan.compaction.tokens_before


def test_a_light_compaction_keeps_the_anchor_turn_and_its_cache(corpus: CompiledCorpus) -> None:
    """When dropping the later turns' excerpts leaves this turn and the next their tails, the
    anchor turn stays whole: everything up to its answer is sent byte for byte (still cached)."""
    chunks = [Snippet(c.id, c.doc_id, c.text, 0.0, c.tokens) for c in corpus.chunks]
    state = Conversation(
        "topk",
        (),
        exchanges=(
            Exchange(TURNS[0], tuple(chunks[0:6]), "ok " * 40, anchor=True),
            Exchange(TURNS[1], tuple(chunks[6:8]), "ok " * 40),
            Exchange(TURNS[2], tuple(chunks[8:10]), "ok " * 40),
        ),
        turns=3,
        questions=tuple(TURNS[1:3]),
    )
    outcomes = {}
    for window in range(400, 2400, 20):  # from too small for even a light compaction to no compaction at all
        rag = make_rag(corpus, window, mode="topk", turn_tail_share=0.05, growth_share=0.2)
        try:
            plan = rag.plan_turn(TURNS[3], conversation=state)
        except ContextLengthError:  # the question alone does not fit this window
            continue
        kind = "none" if plan.compaction is None else "light" if not plan.compaction.reanchored else "re-anchor"
        outcomes.setdefault(kind, plan)
    assert set(outcomes) == {"none", "light", "re-anchor"}, list(outcomes)
    light = outcomes["light"]
    assert light.history[:2] == state.history()[:2]  # the anchor turn, with its excerpts, unchanged
    assert all("Additional excerpts" not in m.content for m in light.history[2:])
    assert not light.anchor and light.compaction.dropped_turns == 0 and light.compaction.snippet_turns == 2
    assert light.conversation.exchanges[0].anchor and not light.conversation.exchanges[-1].anchor
    again = outcomes["re-anchor"]
    assert again.anchor and all("Additional excerpts" not in m.content for m in again.history)
    assert again.conversation.exchanges[-1].anchor and not any(e.anchor for e in again.conversation.exchanges[:-1])


def test_excerpts_go_before_turns_when_that_is_enough(corpus: CompiledCorpus) -> None:
    """With short answers, dropping the earlier turns' excerpts alone makes room."""
    rag = make_rag(corpus, 1400, mode="topk", turn_tail_share=0.1, growth_share=0.2)
    plans = list(play(rag, TURNS, answer="ok " * 40))
    first = next(p for p in plans if p.compaction is not None)
    assert first.compaction.snippet_turns > 0 and first.compaction.dropped_turns == 0
    assert [m.content for m in first.history if m.role == "user"] == TURNS[: first.turn - 1]


def test_route_documents_are_exactly_what_each_prompt_holds(corpus: CompiledCorpus) -> None:
    """After every sticky decision (kept, moved, compacted) the route describes the prompt sent."""
    for window, excerpts in itertools.product((900, 1400), ("fixed", "walk")):
        rag = make_rag(corpus, window, excerpts=excerpts)
        for plan in play(rag, TURNS):
            prompt = rag.turn_prompt(plan)
            assert plan.route.documents == rag.sources(prompt)
            assert plan.route.block_ids == tuple(s.block_id for s in prompt.stable if s.kind == "corpus")
            assert plan.route.tokens.tail == sum(s.tokens for s in prompt.snippets)
            assert plan.route.tokens.stable == sum(corpus.block(b).tokens for b in plan.route.block_ids)
            in_history = {s.chunk_id for e in plan.conversation.exchanges[:-1] for s in e.snippets}
            assert not in_history & {s.chunk_id for s in plan.route.snippets}  # nothing sent twice


def test_a_clear_change_of_topic_moves_the_conversation_once(corpus: CompiledCorpus) -> None:
    """``fixed``: a conversation moves only when its question is clearly in another run."""
    rag = make_rag(corpus, 900, excerpts="fixed")
    plans = list(play(rag, TURNS[:7]))
    blocks = [p.route.block_ids for p in plans]
    assert len(set(blocks[:5])) == 1 and "category:gardening" in blocks[0]
    assert [p.moved for p in plans].count(True) == 1 and plans[5].moved
    assert "category:astronomy" in blocks[5] and blocks[6] == blocks[5]


def test_a_follow_up_retrieves_with_the_questions_before_it(corpus: CompiledCorpus) -> None:
    """ "And what comes after it?" alone points at stars; after the TCP question it finds TCP."""
    rag = make_rag(corpus, 900)
    router = rag.router
    follow = "And what comes after it?"
    alone = router.ranking(router.fused_scores([(follow, 1.0)]))[0]
    assert corpus.chunks[alone].doc_id != "networking/tcp.md"
    first, second = play(rag, ["What happens in the TCP three-way handshake?", follow])
    assert context_need(follow) == pytest.approx(2 / 3)  # two content words: "comes", "after"
    assert rag.conversations.planner.query(first.conversation, follow) == [
        (follow, 1.0),
        ("What happens in the TCP three-way handshake?", pytest.approx(0.5 * 2 / 3)),
    ]
    self_contained = "How does a reflecting telescope gather faint starlight from distant galaxies?"
    assert context_need(self_contained) == 0.0  # names its own subject: retrieved alone
    assert rag.conversations.planner.query(first.conversation, self_contained) == [(self_contained, 1.0)]
    assert "networking/tcp.md" in second.route.documents
    blind = make_rag(corpus, 900, query_turns=0)
    _, alone_turn = play(blind, ["What happens in the TCP three-way handshake?", follow])
    assert alone_turn.route.snippets[0].doc_id != "networking/tcp.md"


def test_a_question_that_cannot_fit_is_refused_with_the_sizes(corpus: CompiledCorpus) -> None:
    rag = make_rag(corpus, 900)
    plans = list(play(rag, TURNS[:3]))
    with pytest.raises(
        ContextLengthError,
        match=r"stable prefix \(\d+ tokens\) and the question \(\d+ tokens\) do not fit the 900-token context",
    ):
        rag.plan_turn("why? " * 600, conversation=plans[-1].conversation.answered("ok"))


def test_a_stateless_conversation_is_derived_the_same_by_any_worker(corpus: CompiledCorpus) -> None:
    """Worker A answers every turn; worker B, which saw none, derives the same bytes from the words."""
    worker_a = make_rag(corpus, 900)
    words: list[Message] = []
    for question in TURNS[:6]:
        plan = worker_a.plan_turn(question, history=words)
        worker_b = make_rag(corpus, 900)
        again = worker_b.plan_turn(question, history=words)
        assert again.history == plan.history and again.route == plan.route
        assert again.conversation.to_json("x") == plan.conversation.to_json("x")
        words += [Message("user", question), Message("assistant", ANSWER)]


def test_a_worker_that_remembers_the_turns_plans_only_the_new_one(corpus: CompiledCorpus) -> None:
    rag = make_rag(corpus, 1400)
    planner = rag.conversations.planner
    calls = []
    real = planner.plan
    planner.plan = lambda *a, **k: calls.append(a[1]) or real(*a, **k)  # type: ignore[method-assign]
    words: list[Message] = []
    for question in TURNS[:5]:
        calls.clear()
        rag.plan_turn(question, history=words)
        assert calls == [question]
        words += [Message("user", question), Message("assistant", ANSWER)]
    calls.clear()
    fresh = make_rag(corpus, 1400)  # shares nothing: re-derives the earlier turns once, without demand
    fresh.conversations.planner.plan = planner.plan  # type: ignore[method-assign]
    fresh.plan_turn("What about compost?", history=words)
    assert calls == [*TURNS[:5], "What about compost?"]


def test_a_stored_conversation_round_trips_and_an_other_build_is_re_derived(corpus: CompiledCorpus) -> None:
    rag = make_rag(corpus, 900)
    plans = list(play(rag, TURNS[:3]))
    state = plans[-1].conversation.answered("fine")
    chunks = rag.conversations._chunks
    text = state.to_json(corpus.fingerprint)
    loaded = Conversation.from_json(text, corpus, chunks)
    assert loaded is not None and loaded.to_json(corpus.fingerprint) == text
    assert loaded.history() == state.history() and loaded.block_ids == state.block_ids
    assert Conversation.from_json(state.to_json("another-build"), corpus, chunks) is None
    assert Conversation.from_json("{not json", corpus, chunks) is None


def test_stores_are_bounded_and_an_unknown_store_url_is_a_config_error() -> None:
    store = MemoryStore(2)
    assert store.add("a", "1") and not store.add("a", "2") and store.get("a") == "1"
    store.put("b", "2")
    store.put("c", "3")
    assert store.get("a") is None and store.get("c") == "3"
    with pytest.raises(ConfigError, match="unsupported URL 'http://example:80'"):
        create_store("http://user:secret@example:80", 10, 60)
    assert isinstance(create_store(None, 10, 60), MemoryStore)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="growth_share"):
        ConversationConfig(growth_share=1.5)


def test_walk_keeps_the_cache_only_while_the_carried_excerpts_pay_for_themselves(corpus: CompiledCorpus) -> None:
    """``conversation.excerpts: walk``: a later turn whose best chunks the prompt already carries keeps
    the cache with a small tail; one about something the conversation does not hold gets every chunk
    ranked above what it carries afresh (a long walk after the history) or starts over (re-anchors)."""
    rag = make_rag(corpus, 1400, mode="topk", excerpts="walk", turn_tail_share=0.05)
    router = rag.router
    question = "What happens in the TCP three-way handshake?"
    ranked = [corpus.chunks[i] for i in router.ranking(router.fused_scores([(question, 1.0)]))]
    as_snippets = [Snippet(c.id, c.doc_id, c.text, 0.0, c.tokens) for c in ranked]
    related = as_snippets[:3]  # what the question needs most is already in the history
    unrelated = [s for s in as_snippets if s.doc_id.startswith("gardening/")][:3]
    for carried, keeps in ((related, True), (unrelated, False)):
        state = Conversation(
            "topk", (), exchanges=(Exchange(TURNS[0], tuple(carried), "ok", anchor=True),), turns=1,
            questions=(TURNS[0],),
        )  # fmt: skip
        plan = rag.plan_turn(question, conversation=state)
        sent = {s.chunk_id for s in plan.route.snippets}
        if keeps:
            assert not plan.anchor and plan.history == state.history() and plan.tail_budget <= int(0.05 * 1400)
        elif plan.anchor:
            assert plan.compaction is not None and plan.compaction.reanchored
        else:  # kept the history: every chunk ranked above the first carried one is sent now
            query = rag.conversations.planner.query(state, question)  # the question with the one before it
            walked = [corpus.chunks[i].id for i in router.ranking(router.fused_scores(query))]
            first = min(walked.index(s.chunk_id) for s in carried)
            assert set(walked[:first]) <= sent and plan.tail_budget > int(0.05 * 1400)
        assert ranked[0].id in sent | {s.chunk_id for s in carried}  # it has its best evidence either way
        if not keeps:
            assert ranked[0].id in sent  # afresh


def test_walk_tail_holds_every_chunk_ranked_above_where_it_stopped(corpus: CompiledCorpus) -> None:
    rag = make_rag(corpus, 1400, mode="topk")
    router = rag.router
    fused = router.fused_scores([("How long should bread dough be kneaded?", 1.0)])
    order = [corpus.chunks[i] for i in router.ranking(fused)]
    carried = frozenset(c.id for c in order[1:6:2])  # every other of the next chunks is already sent
    tail, complete = router.walk_tail(fused, (), carried, allowance=30, room=10_000)
    assert complete
    held = carried | {s.chunk_id for s in tail}
    used = 0
    for chunk in order:  # up to the carried chunk that used the allowance up, nothing is missing
        assert chunk.id in held
        used += chunk.tokens if chunk.id in carried else 0
        if used >= 30:
            break
    _, fits = router.walk_tail(fused, (), frozenset(), allowance=30, room=order[0].tokens - 1)
    assert not fits  # the best chunk alone does not fit the room: the walk cannot complete


def test_a_written_excerpt_walks_further_by_its_write_premium(corpus: CompiledCorpus) -> None:
    """Excerpts written to the cache cost more than plain input, so the same money buys top-k that
    much more: with a premium the walk must go deeper before the carried chunks pay for the prompt."""
    rag = make_rag(corpus, 1400, mode="topk")
    router = rag.router
    fused = router.fused_scores([("How long should bread dough be kneaded?", 1.0)])
    order = [corpus.chunks[i] for i in router.ranking(fused)]
    carried = frozenset(c.id for c in order[1::2])
    plain, _ = router.walk_tail(fused, (), carried, allowance=30, room=10_000)
    priced, complete = router.walk_tail(fused, (), carried, allowance=30, room=10_000, premium=0.5)
    assert complete and len(priced) > len(plain)
    walked = excerpts = 0
    for chunk in order:  # the carried chunks walked cover the allowance plus the premium on the excerpts
        if chunk.id in carried:
            walked += chunk.tokens
        elif chunk.id in {s.chunk_id for s in priced}:
            excerpts += chunk.tokens
        if walked >= 30 + 0.5 * excerpts:
            break
    else:
        pytest.fail("the walk stopped before the carried chunks paid for its excerpts")


def test_a_walk_conversation_keeps_its_run_only_while_it_holds_what_top_k_would(corpus: CompiledCorpus) -> None:
    """``Router.reanchor_run``: a re-anchoring turn keeps the pinned run while it is admissible at the
    read price, goes to another run or to top-k otherwise; and the route says what was sent."""
    rag = make_rag(corpus, 900, excerpts="walk")
    router = rag.router
    assert len(router.runs) > 1
    first = router.route(TURNS[0], observe=False)
    pinned = first.block_ids
    same = router.fused_scores([(TURNS[3], 1.0)])
    assert router.reanchor_run(same, pinned, router.budget) == tuple(pinned)
    elsewhere = router.fused_scores([(TURNS[5], 1.0)])
    targets = {router.reanchor_run(elsewhere, pinned, budget) for budget in range(0, router.budget + 1, 16)}
    assert () in targets and tuple(pinned) in targets  # none fits a small budget; a large one holds it all
    assert any(corpus.blocks[b].category == "astronomy" for t in targets for b in t)  # in between: it moves
    assert router.reanchor_run(elsewhere, pinned, 0) == ()  # no room for any walk: top-k
    modes = {
        plan.conversation.mode == ("blocks" if plan.conversation.block_ids else "topk") for plan in play(rag, TURNS)
    }
    assert modes == {True}


def test_a_turn_is_written_when_its_next_turn_is_expected_to_read_it_back(corpus: CompiledCorpus) -> None:
    """``TurnPlan.cache_turn`` (docs/architecture.md, "Which turns are written to the cache"): a later turn
    is written unless it walked and compacted; an anchor (a first, re-anchoring or moving turn) is written
    while the anchors this planner has seen were read back by their next turn at least premium /
    (write − read) of the time (0.25 / 1.15 under claude-sonnet-4-5), from a uniform prior; the prompt the
    backend gets says the same."""
    rag = make_rag(corpus, 900, excerpts="walk")
    planner = rag.conversations.planner
    assert (planner.router.write_price, planner.router.read_price) == (1.25, 0.1)
    outcomes = []
    for plan in play(rag, TURNS):
        kept, dropped = planner.anchors_kept, planner.anchors_dropped  # this turn's own outcome counted
        outcomes.append((kept, dropped))
        expected = (kept + 1) / (kept + dropped + 2) >= 0.25 / 1.15 if plan.anchor else plan.compaction is None
        assert plan.cache_turn is expected and rag.turn_prompt(plan).cache_turn is expected
        assert plan.to_dict()["cache_turn"] is expected
    assert outcomes[-1] != (0, 0) and outcomes[0] == (0, 0)  # the later turns followed some anchors

    # Unrelated questions re-anchor every turn: after three anchors dropped (1/5 < 0.217) none is written.
    planner.anchors_kept, planner.anchors_dropped = 0, 2
    assert planner.writes(anchor=True, walking=False, compaction=None)
    planner.anchors_dropped = 3
    assert not planner.writes(anchor=True, walking=False, compaction=None)
    assert planner.writes(anchor=False, walking=False, compaction=None)  # a follow-up turn: kept by the next
    # Follow-ups keep their anchors: a run of them brings writing back.
    planner.anchors_kept = 2
    assert planner.writes(anchor=True, walking=True, compaction=None)


def test_with_no_write_premium_every_turn_is_written(corpus: CompiledCorpus) -> None:
    """An automatic-prefix vendor (gpt-5.4: writes at the input price) loses nothing by writing."""
    from ragcache.backends.profile import profile_for

    rag = make_rag(corpus, 900, excerpts="walk")
    planner = rag.conversations.planner
    planner.router.profile = profile_for("openai", "gpt-5.4")
    planner.router.write_price = planner.router.profile.write_multiplier
    planner.anchors_dropped = 100
    assert planner.writes(anchor=True, walking=True, compaction=None)


def _room(rag: RagCache, plan: TurnPlan) -> int:
    """The room the planner saw for ``plan``'s excerpts: the window less output, margin, prefix, history, question."""
    before = replace(plan.conversation, exchanges=plan.conversation.exchanges[:-1])
    return rag.conversations.planner._sizes(before, plan.question, None).room


def test_the_first_turn_keeps_the_excerpts_the_router_chose_its_blocks_with(corpus: CompiledCorpus) -> None:
    """The router picks a run of blocks together with its excerpts (a superset of top-k at their price);
    pinning the blocks with a smaller tail, to leave room to grow, would send a prompt the router never
    chose. The first turn keeps the router's excerpts whole when they fit, with less room to grow."""
    kept_whole = 0
    for window in (800, 900, 1400, 2400):
        rag = make_rag(corpus, window)
        growth = int(rag.conversations.planner.settings.growth_share * window)
        for question in TURNS:
            plan = rag.plan_turn(question, observe=False)
            routed = rag.router.route(question, observe=False)
            assert plan.route.block_ids == routed.block_ids
            theirs = rag.conversations.planner.excerpt_tokens(routed.snippets, question)  # as sent, headers too
            if theirs <= _room(rag, plan):
                assert {s.chunk_id for s in routed.snippets} <= {s.chunk_id for s in plan.route.snippets}
                kept_whole += theirs > _room(rag, plan) - growth  # more than the growth rule alone leaves
    assert kept_whole > 0


def test_a_turn_that_re_anchors_without_following_up_fills_the_room(corpus: CompiledCorpus) -> None:
    """``walk``: a re-anchoring turn whose question is not a follow-up leaves no room to grow (its successor
    is as likely to move on again, and the room is evidence now); the first turn still leaves it."""
    rag = make_rag(corpus, 900, excerpts="walk")
    growth = int(rag.conversations.planner.settings.growth_share * 900)
    plans = list(play(rag, TURNS))
    planner = rag.conversations.planner
    sent = planner.excerpt_tokens(plans[0].route.snippets, plans[0].question)  # as rendered
    tail = min(int(planner.settings.turn_tail_share * 900), _room(rag, plans[0]))  # a later turn's tail at least
    assert plans[0].tail_budget <= max(_room(rag, plans[0]) - growth, tail, sent)
    refilled = [p for p in plans[1:] if p.anchor and p.walking]
    assert refilled
    for plan in refilled:
        assert plan.tail_budget == max(_room(rag, plan), 0)


def test_auto_follows_up_while_a_fixed_tail_holds_what_top_k_would_and_walks_otherwise(corpus: CompiledCorpus) -> None:
    """``conversation.excerpts: auto``: a later turn is planned exactly as ``fixed`` plans it when the prompt
    plus a fixed tail already holds what top-k at the prompt's read price would (a follow-up: the walk
    completes within the tail), else exactly as ``walk`` plans it; the first turn as ``fixed``."""
    for window in (800, 900):  # the corpus does not fit: blocks, then top-k
        auto, fixed, walk = (make_rag(corpus, window, excerpts=e) for e in ("auto", "fixed", "walk"))
        conversation: Conversation | None = None
        kinds = []
        for question in TURNS:
            plan = auto.plan_turn(question, conversation=conversation)
            kind = "walk" if plan.walking else "fixed"
            expected = (walk if plan.walking else fixed).plan_turn(question, conversation=conversation)
            assert plan.route.snippets == expected.route.snippets and plan.route.block_ids == expected.route.block_ids
            assert (plan.anchor, plan.moved, plan.compaction) == (expected.anchor, expected.moved, expected.compaction)
            if conversation is not None:
                router, planner = auto.router, auto.conversations.planner
                best = corpus.chunks[int(router.ranking(router.fused_scores(planner.query(conversation, question)))[0])]
                sent = {s.chunk_id for e in plan.conversation.exchanges for s in e.snippets}  # as the prompt holds
                held = best.id in sent or {best.block_id, "full"} & set(plan.route.block_ids)
                assert held  # a follow-up's fixed tail holds the best chunk if the prompt did not
            kinds.append(kind)
            conversation = plan.conversation.answered(ANSWER)
        assert kinds[0] == "fixed" and {"fixed", "walk"} <= set(kinds[1:])  # follow-ups and changes of topic


def test_a_corpus_that_only_just_fits_the_budget_still_answers_its_first_turn(corpus: CompiledCorpus) -> None:
    """The router sends the whole corpus only when it fits with the planner's estimate margin to spare: a
    corpus that fits the budget by fewer tokens than that used to be routed whole and then refused."""
    routing = ROUTER  # no history allowance: only the margin keeps room for the question
    overhead = sum(corpus.blocks[b].tokens for b in NON_CORPUS_BLOCKS if b in corpus.blocks)
    tight = corpus.total_tokens + OUT + routing.history_allowance + overhead + 10  # fits the budget by 10
    for window, whole in ((tight, False), (tight + 100, True)):
        config = Config(router=routing, backend=BackendConfig(max_output_tokens=OUT))
        router = HybridRouter(corpus, routing, Capabilities(context_window=window), OUT)
        rag = RagCache(config, corpus, None, router)  # type: ignore[arg-type]
        plan = rag.plan_turn(TURNS[0])  # planned, not refused
        assert (plan.route.mode == "full") is whole and prompt_tokens(rag, plan) <= window - OUT
