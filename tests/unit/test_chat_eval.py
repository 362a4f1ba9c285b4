"""eval-chat (ragcache/bench/chat_eval.py, chat_baselines.py): conversations, recall, the baselines'
prompts and the equal-cost search, on the four-topic corpus with the real index and HybridRouter.

Cost rules are claude-sonnet-4-5's with no minimum cacheable size, so this small corpus caches.
"""

from __future__ import annotations

import itertools
import random

import pytest
from router_corpus import build_topics

from ragcache.bench.chat_baselines import Baselines, turn_queries
from ragcache.bench.chat_eval import (
    SHUFFLE_SEED,
    ChatConversation,
    TurnRecord,
    build_conversations,
    cut,
    evaluate_chat,
    message_block,
    ragcache_records,
    replay_sets,
    strategy_figures,
    synthetic_answer,
    usd_per_1k,
)
from ragcache.cache.replay import rules_for
from ragcache.config import BackendConfig, Config, ConversationConfig, RouterConfig
from ragcache.conversation import ConversationPlanner
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.prompt import render_user_turn
from ragcache.router.evaluate import QAItem
from ragcache.router.policy import HybridRouter

OUT = 60
CONFIG = Config(
    router=RouterConfig(history_allowance=0, snippet_tokens=64), backend=BackendConfig(max_output_tokens=OUT)
)
RULES = rules_for("claude-sonnet-4-5", min_cacheable_tokens=0)
QUESTIONS = [  # file order: gardening and astronomy interleave, one networking question is left alone
    ("How deep should tomato seeds be sown?", "gardening/tomatoes.md"),
    ("What does a red giant become?", "astronomy/stars.md"),
    ("How does compost help garden soil?", "gardening/soil.md"),
    ("Which planet has the Great Red Spot?", "astronomy/planets.md"),
    ("When should roses be pruned?", "gardening/pruning.md"),
    ("What decides how faint a galaxy a telescope shows?", "astronomy/telescopes.md"),
    ("How long should bread dough be kneaded?", "cooking/bread.md"),
    ("What thickens a bechamel sauce?", "cooking/sauces.md"),
    ("How is a chef's knife kept sharp?", "cooking/knives.md"),
    ("What happens in the TCP three-way handshake?", "networking/tcp.md"),
    ("Which ice are Saturn's rings made of?", "astronomy/planets.md"),
]
ITEMS = [QAItem(f"q{n}", q, (doc,)) for n, (q, doc) in enumerate(QUESTIONS)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CompiledCorpus:
    return build_topics(tmp_path_factory.mktemp("chat-eval")).corpus


def make_router(corpus: CompiledCorpus, window: int) -> HybridRouter:
    from ragcache.backends.base import Capabilities

    return HybridRouter(corpus, CONFIG.router, Capabilities(context_window=window), OUT)


def planner(corpus: CompiledCorpus, window: int, **settings: object) -> ConversationPlanner:
    conversation = ConversationConfig(**settings)  # type: ignore[arg-type]
    return ConversationPlanner.for_corpus(corpus, make_router(corpus, window), conversation, OUT)


def test_cut_keeps_a_remainder_of_two_and_drops_a_single_leftover() -> None:
    assert [len(p) for p in cut(ITEMS[:7], 5)] == [5, 2]
    assert [len(p) for p in cut(ITEMS[:6], 5)] == [5]
    assert [len(p) for p in cut(ITEMS[:3], 1)] == [1, 1, 1]


def test_topical_conversations_share_a_category_and_shuffled_ones_follow_the_seed(corpus: CompiledCorpus) -> None:
    sets = build_conversations(corpus, ITEMS, 3)
    topical = [[i.id for i in c.items] for c in sets["topical"]]
    # gardening (3) and astronomy (4: 3 + a lone leftover dropped), cooking (3); networking's single item dropped
    assert topical == [["q0", "q2", "q4"], ["q1", "q3", "q5"], ["q6", "q7", "q8"]]
    for conversation in sets["topical"]:
        assert len({corpus.documents[i.gold[0]].category for i in conversation.items}) == 1
    mixed = list(ITEMS)
    random.Random(SHUFFLE_SEED).shuffle(mixed)
    assert [c.items for c in sets["shuffled"]] == cut(mixed, 3)
    assert [len(c.items) for c in sets["shuffled"]] == [3, 3, 3, 2]  # 11 items: the remainder of 2 stays
    assert sets == build_conversations(corpus, ITEMS, 3)  # deterministic
    with pytest.raises(ValueError, match="at least 1"):
        build_conversations(corpus, ITEMS, 0)


def test_recall_counts_the_new_questions_gold_anywhere_in_the_prompt() -> None:
    records = [
        TurnRecord("topical", 1, (("a", 10),), frozenset({"d1"}), ("d1", "d2")),
        TurnRecord("topical", 2, (("a", 10), ("b", 30)), frozenset({"d1", "d2"}), ("d2",)),
        TurnRecord("shuffled", 1, (("c", 20),), frozenset({"d9"}), ("d3",)),
    ]
    figures = strategy_figures(records, replay_sets(records, RULES, 10.0), 2)
    assert figures["recall"] == pytest.approx((0.5 + 1.0 + 0.0) / 3, abs=1e-4)
    assert figures["hit_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["recall_by_turn"] == [0.25, 1.0]
    assert figures["by_set"]["topical"]["recall"] == 0.75 and figures["by_set"]["shuffled"]["recall"] == 0.0
    assert figures["prompt_tokens_mean"] == pytest.approx(70 / 3, abs=0.1)
    # turn 2 of "topical" reads block "a" (10 of its 40 tokens) cached; nothing else is cached
    assert figures["cached_share"] == pytest.approx(10 / 70, abs=1e-4)


def test_ragcache_prompts_are_the_prefix_the_history_as_sent_and_the_new_turn(corpus: CompiledCorpus) -> None:
    plans = planner(corpus, 1400)
    conversation = ChatConversation("topical", 0, tuple(ITEMS[0:5:2]))
    records = ragcache_records(plans, [conversation], 30)
    count = plans.count_tokens
    for before, after in itertools.pairwise(records):
        if not after.compacted and not after.moved:  # turn N+1 begins with turn N's prompt, then its answer
            answer = synthetic_answer("topical-0", before.turn, 30)
            assert after.blocks[: len(before.blocks) + 1] == (*before.blocks, message_block("assistant", answer, count))
    assert [r.turn for r in records] == [1, 2, 3]
    assert all(len(set(r.excerpts)) == len(r.excerpts) for r in records)
    assert all(r.gold[0] in r.documents for r in records)  # the topic's blocks or excerpts hold each answer


def test_topk_in_system_sends_only_this_turns_excerpts_and_raw_history(corpus: CompiledCorpus) -> None:
    plans = planner(corpus, 900)
    sets = {"topical": build_conversations(corpus, ITEMS, 3)["topical"], "shuffled": []}
    queries = turn_queries(plans, sets)
    baselines = Baselines(plans, queries, 30, RULES, 10.0)
    records = baselines.records("topk_in_system", 200)
    count = plans.count_tokens
    for q, record in zip(queries, records, strict=True):
        picks = baselines._pick(q.order, 200)
        assert record.documents == frozenset(baselines.doc_of[i] for i in picks)  # this turn's excerpts only
        system = [b for b in record.blocks if b[0].startswith("sys:")]
        assert len(system) == 1 and system[0][1] <= 200
        assert record.blocks[-1] == message_block("user", q.question, count)  # the question, no excerpts
        earlier = [b for b in record.blocks if b[0].startswith("msg:")][:-1]
        expected = [
            block
            for p in queries
            if p.conversation == q.conversation and p.turn < q.turn
            for block in (
                message_block("user", p.question, count),
                message_block("assistant", synthetic_answer(p.conversation, p.turn, 30), count),
            )
        ]
        assert earlier == expected[len(expected) - len(earlier) :]  # the newest turns, whole, in order
        assert record.tokens <= baselines.usable


def test_topk_after_history_keeps_the_history_as_sent_and_never_resends(corpus: CompiledCorpus) -> None:
    plans = planner(corpus, 900)
    sets = {"topical": build_conversations(corpus, ITEMS, 3)["topical"], "shuffled": []}
    baselines = Baselines(plans, turn_queries(plans, sets), 30, RULES, 10.0)
    for budget in (120, 300):
        records = baselines.records("topk_after_history", budget)
        for before, after in itertools.pairwise(records):
            assert after.tokens <= baselines.usable
            assert len(set(after.excerpts)) == len(after.excerpts)  # no excerpt sent twice in one prompt
            if after.turn == before.turn + 1 and not after.compacted:
                assert after.blocks[: len(before.blocks)] == before.blocks
                assert before.documents <= after.documents  # earlier excerpts stay in the prompt
        compacted = [r for r in records if r.compacted]
        assert (budget == 300) == bool(compacted), "a 300-token turn budget must compact in a 900-token window"
    # at budget 0 nothing is retrieved: only the raw words, and recall is 0 on these questions
    empty = baselines.records("topk_after_history", 0)
    assert all(not r.documents for r in empty)


def test_equal_cost_search_finds_the_largest_budget_within_the_target(corpus: CompiledCorpus) -> None:
    plans = planner(corpus, 900)
    sets = build_conversations(corpus, ITEMS, 3)
    baselines = Baselines(plans, turn_queries(plans, sets), 30, RULES, 10.0)
    for strategy in ("topk_in_system", "topk_after_history"):
        target = baselines.cost(strategy, 250)
        budget, matched = baselines.equal_cost_budget(strategy, target)
        assert matched and budget >= 250 and baselines.cost(strategy, budget) <= target
        assert budget == baselines.cap or baselines.cost(strategy, budget + 1) > target
        assert baselines.equal_cost_budget(strategy, baselines.cost(strategy, 0) / 2) == (0, False)
    # excerpts in the system message change the prefix every turn: no breakpoint after the instructions is cheaper
    records = baselines.records("topk_in_system", 250)
    costs, layout = baselines.costs("topk_in_system", 250)
    assert layout == "instructions_only"
    assert usd_per_1k(costs) < usd_per_1k(replay_sets(records, RULES, 10.0))


def test_excerpt_sizes_add_up_to_the_rendered_message(corpus: CompiledCorpus) -> None:
    """Baseline excerpts are counted per chunk (fast enough for the search), close to counting the message."""
    plans = planner(corpus, 900)
    sets = {"topical": build_conversations(corpus, ITEMS, 3)["topical"], "shuffled": []}
    baselines = Baselines(plans, turn_queries(plans, sets), 30, RULES, 10.0)
    router = plans.router
    for q in baselines.queries:
        picks = baselines._pick(q.order, 300)
        snippets = router._snippets(router.fused_scores([(q.question, 1.0)]), list(picks))  # type: ignore[attr-defined]
        exact = plans.count_tokens(render_user_turn(snippets, q.question))
        estimate = baselines._user(q.question, picks)[1] - 8
        # the chars tokenizer rounds each piece up: the sum may exceed the whole by < 2 tokens an excerpt
        assert 0 <= estimate - exact <= 2 * len(picks) + 1


def test_report_json_shape(corpus: CompiledCorpus) -> None:
    sets = build_conversations(corpus, ITEMS, 3)
    report = evaluate_chat(
        corpus, sets, lambda w: make_router(corpus, w), [1400, 900], settings=CONFIG.conversation,
        reserved_output=OUT, rules=RULES, rate_per_min=10.0, answer_tokens=30, turns=3,
    )  # fmt: skip
    assert {"corpus", "conversations", "turns", "windows"} <= set(report)
    assert report["conversations"] == 7 and report["turns"] == 3
    assert [w["window"] for w in report["windows"]] == [900, 1400]
    keys = {"recall", "cached_share", "prompt_tokens_mean", "usd_per_1k_turns"}
    for row in report["windows"]:
        for name in ("ragcache", "ragcache_question_only", "topk_in_system", "topk_after_history"):
            assert keys <= set(row[name]) and len(row[name]["recall_by_turn"]) == 3
            assert 0.0 <= row[name]["recall"] <= row[name]["hit_rate"] <= 1.0
            assert 0.0 <= row[name]["cached_share"] <= 1.0
        for name in ("topk_in_system", "topk_after_history"):  # at equal cost: never dearer than ragcache
            cheaper = row[name]["usd_per_1k_turns"] <= row["ragcache"]["usd_per_1k_turns"] + 1e-3
            assert cheaper or (row[name]["cost_matched"] is False and row[name]["budget_tokens"] == 0)
        assert {"compactions", "moves"} <= set(row["ragcache"])
    with pytest.raises(ValueError, match="positive"):
        evaluate_chat(corpus, sets, lambda w: make_router(corpus, w), [0], settings=CONFIG.conversation,
                      reserved_output=OUT, rules=RULES, rate_per_min=10.0, answer_tokens=30, turns=3)  # fmt: skip
