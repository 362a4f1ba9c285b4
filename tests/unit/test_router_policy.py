"""HybridRouter v2: full vs runs of blocks vs top-k, tails, stickiness, demand, bounded prefixes.

Corpora are real builds (``build_corpus`` + the index step) of a four-topic corpus;
the index uses the real all-MiniLM-L6-v2 and BM25. Budgets are set through the
backend's declared context window, as a real backend would declare it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from router_corpus import build_topics

from ragcache.backends.base import Capabilities
from ragcache.backends.profile import default_profile, profile_for
from ragcache.config import RouterConfig
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.errors import RoutingError
from ragcache.prompt import estimate_margin
from ragcache.router.policy import Demand, HybridRouter, context_budget, plan_runs, tail_reserve

ROOT = Path(__file__).resolve().parents[2]
OUT = 100  # reserved output tokens
CONFIG = RouterConfig(history_allowance=0, snippet_tokens=64, top_k=4)
QUESTIONS = [
    "How deep should tomato seeds be sown?",
    "How does a telescope magnify faint galaxies?",
    "What happens in the TCP three-way handshake?",
    "How long should bread dough be kneaded?",
]
EXPECTED = ["category:gardening", "category:astronomy", "category:networking", "category:cooking"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CompiledCorpus:
    return build_topics(tmp_path_factory.mktemp("policy")).corpus


def window_for(corpus: CompiledCorpus, budget: int, config: RouterConfig = CONFIG) -> Capabilities:
    """A context window whose routing budget (corpus blocks + tail) is exactly ``budget``."""
    overhead = context_budget(corpus, config, Capabilities(context_window=0), OUT)
    return Capabilities(context_window=budget - overhead)


def budget_for_runs(run_tokens: int, config: RouterConfig = CONFIG) -> int:
    """The smallest routing budget whose runs may hold ``run_tokens`` (after the tail's reserve)."""
    budget = run_tokens
    while budget - tail_reserve(budget, config.snippet_tokens, default_profile().read_multiplier) < run_tokens:
        budget += 1
    return budget


def one_block_each(corpus: CompiledCorpus, config: RouterConfig = CONFIG) -> Capabilities:
    """A window where every run is one block (the biggest fits, no two do)."""
    biggest = max(corpus.block(b).tokens for b in corpus.category_block_ids())
    return window_for(corpus, budget_for_runs(biggest, config), config)


def test_full_when_whole_corpus_fits(corpus: CompiledCorpus) -> None:
    spare = estimate_margin(corpus.total_tokens + 1000)  # the planner's margin at about this window
    router = HybridRouter(corpus, CONFIG, window_for(corpus, corpus.total_tokens + spare), OUT)
    assert HybridRouter(corpus, CONFIG, window_for(corpus, corpus.total_tokens + spare // 2), OUT).mode == "blocks"
    routes = [router.route(q) for q in QUESTIONS]
    assert {r.mode for r in routes} == {"full"} and {r.block_ids for r in routes} == {("full",)}
    assert router.prefixes() == [("full",)] == router.hot_prefixes(3)
    assert "fits" in routes[0].reason and routes[0].snippets == ()
    assert set(routes[0].documents) == set(corpus.documents)
    assert routes[0].tokens.stable == corpus.block("full").tokens and routes[0].tokens.tail == 0


def test_window_tokens_overrides_the_backend_window(corpus: CompiledCorpus) -> None:
    small = one_block_each(corpus)
    config = CONFIG.model_copy(update={"window_tokens": small.context_window})
    router = HybridRouter(corpus, config, Capabilities(context_window=1_000_000), OUT)
    assert router.mode == "blocks" and router.budget == HybridRouter(corpus, CONFIG, small, OUT).budget


def test_one_block_runs_route_by_topic_with_a_tail_outside_the_prefix(corpus: CompiledCorpus) -> None:
    router = HybridRouter(corpus, CONFIG, one_block_each(corpus), OUT)
    assert router.prefixes() == [(b,) for b in corpus.category_block_ids()]
    for question, block in zip(QUESTIONS, EXPECTED, strict=True):
        route = router.route(question)
        assert route.mode == "blocks" and route.block_ids == (block,), route.to_dict()
        topic = block.split(":")[1]
        assert all(s.doc_id.split("/")[0] != topic for s in route.snippets)  # the tail skips what the prefix holds
        assert route.tokens.tail == sum(s.tokens for s in route.snippets) <= router.budget - route.tokens.stable
        assert len(route.snippets) <= CONFIG.top_k
        assert route.tokens.stable == corpus.block(block).tokens
        assert route.documents[: len(corpus.block(block).documents)] == corpus.block(block).documents
        assert {s.doc_id for s in route.snippets} <= set(route.documents)


def test_runs_fill_the_budget_and_prefer_category_cuts() -> None:
    sizes = [300 + (i * 7919) % 1748 for i in range(400)]  # 300 … 2047 tokens, deterministic
    categories = [f"c{i // 60}" for i in range(400)]
    ids = [f"b{i}" for i in range(400)]
    for cap in (8_000, 31_000, 120_000, 190_000):
        runs = plan_runs(ids, sizes, categories, cap)
        assert [b for r in runs for b in ids[r.start : r.end]] == ids  # segments: every block once, in order
        assert all(list(r.positions) == sorted(set(r.positions)) for r in runs)  # canonical order within a run
        assert all(r.block_ids == tuple(ids[j] for j in r.positions) for r in runs)
        assert all(r.tokens == sum(sizes[j] for j in r.positions) <= cap for r in runs)
        assert all(r.tokens >= 0.8 * cap for r in runs[:-1]), [r.tokens for r in runs]
        assert runs[-1].tokens >= min(0.8 * cap, cap - max(sizes))  # a short last one is topped up with the head
        assert len(runs) <= -(-sum(sizes) // int(0.8 * cap)) + 1
        assert plan_runs(ids, sizes, categories, cap) == runs
    runs = plan_runs(ids, sizes, categories, 31_000)
    cuts = {categories[r.start] != categories[r.start - 1] for r in runs[1:]}
    assert True in cuts  # some runs start exactly at a category boundary
    tiny = plan_runs(["a", "b", "c"], [50, 500, 50], ["x"] * 3, 100)
    assert [r.block_ids for r in tiny] == [("a", "c")]  # b is too big for any run; a + c make one


def test_a_corpus_a_little_larger_than_the_cap_gives_full_nested_runs() -> None:
    sizes = [1000 + (i * 337) % 500 for i in range(100)]  # 1000 … 1499 tokens
    ids, categories = [f"b{i}" for i in range(100)], [f"c{i // 10}" for i in range(100)]
    cap = int(sum(sizes) / 1.15)  # the corpus is 15% larger than what one run may hold
    runs = plan_runs(ids, sizes, categories, cap)
    assert len(runs) == 2 and all(r.tokens >= 0.8 * cap for r in runs), [r.tokens for r in runs]
    last = runs[1]
    assert sum(sizes[last.start : last.end]) < 0.5 * cap  # its own segment alone would leave the window empty
    assert last.head > 0 and last.block_ids[: last.head] == runs[0].block_ids[: last.head]  # nested on run 0


def test_router_fills_the_budget_when_the_corpus_does_not_quite_fit(corpus: CompiledCorpus) -> None:
    budget = int(corpus.total_tokens / 1.1)  # the corpus is a little larger than the window
    config = CONFIG.model_copy(update={"top_k": 0})  # no cap on the tail's chunk count (the default)
    router = HybridRouter(corpus, config, window_for(corpus, budget, config), OUT)
    assert router.mode == "blocks" and router.runs
    for question in QUESTIONS:
        route = router.route(question)
        assert route.tokens.stable + route.tokens.tail >= 0.8 * budget, route.to_dict()
        assert route.tokens.stable + route.tokens.tail <= budget


def test_runs_at_a_large_window_fill_most_of_the_budget(corpus: CompiledCorpus) -> None:
    blocks = corpus.category_block_ids()
    two = sum(corpus.block(b).tokens for b in blocks[:2])
    router = HybridRouter(corpus, CONFIG, window_for(corpus, budget_for_runs(two)), OUT)
    assert router.prefixes()[0] == tuple(blocks[:2]) and len(router.prefixes()) <= 3
    route = router.route("Which planets orbit the sun?")
    runs_cap = router.budget - tail_reserve(router.budget, CONFIG.snippet_tokens, router.read_price)
    assert route.block_ids == tuple(blocks[:2]) and route.tokens.stable >= 0.8 * runs_cap


def test_forced_full_that_does_not_fit_is_a_routing_error(corpus: CompiledCorpus) -> None:
    config = CONFIG.model_copy(update={"mode": "full"})
    with pytest.raises(RoutingError, match="mode is 'full'"):
        HybridRouter(corpus, config, one_block_each(corpus, config), OUT)
    with pytest.raises(RoutingError, match="larger window"):
        HybridRouter(corpus, CONFIG, window_for(corpus, 0), OUT)


def test_runs_that_would_be_written_per_question_lose_to_top_k(corpus: CompiledCorpus) -> None:
    warm = HybridRouter(corpus, CONFIG, one_block_each(corpus), OUT)
    assert max(warm.run_prices()) < warm.read_price + 0.01  # four runs, 50 questions per TTL: all stay warm
    rare = CONFIG.model_copy(update={"questions_per_ttl": 0.01, "top_k": 0})  # a question per 100 cache lifetimes
    router = HybridRouter(corpus, rare, one_block_each(corpus), OUT)
    assert min(router.run_prices()) > 1.3  # every run is written again for each question
    route = router.route(QUESTIONS[2])
    assert route.mode == "topk" and route.block_ids == () and route.tokens.stable == 0, route.to_dict()
    assert route.tokens.tail >= 0.8 * router.budget and "pays" in route.reason
    assert max(route.snippets, key=lambda s: s.score).doc_id == "networking/tcp.md"
    assert route.documents == tuple(dict.fromkeys(s.doc_id for s in route.snippets))


@pytest.mark.parametrize(
    ("vendor", "model", "ttl"),
    [("anthropic", "claude-sonnet-4-5", "1h"), ("openai", "gpt-4o", None), ("vllm", "any", None)],
)
def test_runs_are_priced_with_the_profile_the_router_is_built_with(
    corpus: CompiledCorpus, vendor: str, model: str, ttl: str | None
) -> None:
    profile = profile_for(vendor, model, ttl)
    rare = CONFIG.model_copy(update={"questions_per_ttl": 0.01})  # every run is written again per question
    router = HybridRouter(corpus, rare, one_block_each(corpus), OUT, profile=profile)
    assert (router.read_price, router.write_price) == (profile.read_multiplier, profile.write_multiplier)
    expected = profile.read_multiplier + profile.write_multiplier * np.exp(-0.01 / len(router.runs))
    assert router.run_prices() == pytest.approx(np.full(len(router.runs), expected), abs=1e-5)
    assert HybridRouter(corpus, rare, one_block_each(corpus), OUT).profile == default_profile()


def test_a_question_of_stop_words_only_is_routed(corpus: CompiledCorpus) -> None:
    """No BM25 term at all ("why?"): dense scores alone (bm25s cannot score an empty query)."""
    router = HybridRouter(corpus, CONFIG, one_block_each(corpus), OUT)
    assert router.route("why?").mode in ("blocks", "topk")
    assert router.route("Why?  ...").snippets or router.route("why?").block_ids


@pytest.mark.parametrize("mode", ["topk", "auto"])
def test_top_k_caps_the_chunks_of_every_route(corpus: CompiledCorpus, mode: str) -> None:
    """``router.top_k`` is honoured on a top-k route too (it once capped run routes only), and on a
    conversation turn's tail."""
    config = CONFIG.model_copy(update={"top_k": 2, "mode": mode, "questions_per_ttl": 0.01})
    router = HybridRouter(corpus, config, one_block_each(corpus, config), OUT)
    for question in QUESTIONS:
        route = router.route(question)
        assert route.mode == "topk" and 0 < len(route.snippets) <= 2, route.to_dict()
        tail = router.tail(router.fused_scores([(question, 1.0)]), (), router.budget)
        assert len(tail) == 2
    loose = config.model_copy(update={"top_k": 0, "mode": "auto"})
    unlimited = HybridRouter(corpus, loose, one_block_each(corpus, loose), OUT)
    assert len(unlimited.route(QUESTIONS[0]).snippets) > 2  # so the cap did the work


@pytest.mark.parametrize("runs_of", [1, 2])
def test_a_run_route_holds_every_chunk_of_top_k_at_its_price(corpus: CompiledCorpus, runs_of: int) -> None:
    blocks = corpus.category_block_ids()
    biggest = sum(sorted(corpus.block(b).tokens for b in blocks)[-runs_of:])
    router = HybridRouter(
        corpus, CONFIG.model_copy(update={"top_k": 0}), window_for(corpus, budget_for_runs(biggest)), OUT
    )
    questions = [*QUESTIONS, "sun", "garden soil and TCP", "knife", "stars and bread", "DNS cache TTL"]
    checked = 0
    for question in questions:
        price = router.run_prices()
        route = router.route(question, observe=False)
        if route.mode != "blocks":
            continue
        run = router._run_by_blocks[route.block_ids]
        fused = router.index.scores(question, CONFIG.dense_weight).fused
        order = np.lexsort((np.arange(len(fused)), -fused))
        cost = int(price[run] * route.tokens.stable) + route.tokens.tail  # what the route costs, in plain tokens
        held = {c.id for c in corpus.chunks if c.block_id in route.block_ids} | {s.chunk_id for s in route.snippets}
        sizes = np.cumsum([corpus.chunks[i].tokens for i in order])
        topk = {corpus.chunks[i].id for i in order[: int(np.searchsorted(sizes, cost, side="right"))]}  # the eval's
        assert topk <= held, (question, route.to_dict())
        checked += 1
    assert checked >= 5


def test_demand_ranks_hot_prefixes_and_can_be_shared(corpus: CompiledCorpus) -> None:
    router = HybridRouter(corpus, CONFIG, one_block_each(corpus), OUT)
    for question in [QUESTIONS[2], QUESTIONS[2], QUESTIONS[3]]:
        router.route(question)
    router.route(QUESTIONS[1], observe=False)
    assert router.hot_prefixes(2) == [("category:networking",), ("category:cooking",)]
    assert router.demand.clock == 3
    shared = Demand.from_dict(json.loads(json.dumps(router.demand.to_dict())))
    other = HybridRouter(corpus, CONFIG, one_block_each(corpus), OUT, demand=shared)
    assert other.hot_prefixes(4) == router.hot_prefixes(4)
    with pytest.raises(RoutingError, match="demand state"):
        HybridRouter(corpus, CONFIG, window_for(corpus, corpus.total_tokens - 1), OUT, demand=Demand(99))


def test_prefixes_bounded_and_cover_every_emitted_route(corpus: CompiledCorpus) -> None:
    router = HybridRouter(corpus, CONFIG, one_block_each(corpus), OUT)
    prefixes = router.prefixes()
    assert len(prefixes) == len(set(prefixes)) == len(corpus.category_block_ids())
    questions = [*QUESTIONS, "sun", "garden soil and TCP", "knife", "stars and bread", "DNS cache TTL"]
    for question in questions:
        route = router.route(question)
        assert route.block_ids in prefixes or route.mode == "topk", route.to_dict()


SCRIPT = """
import json, sys
from ragcache.backends.base import Capabilities
from ragcache.backends.profile import default_profile, profile_for
from ragcache.config import RouterConfig
from ragcache.corpus.store import load_corpus
from ragcache.router.policy import HybridRouter
corpus = load_corpus(sys.argv[1])
router = HybridRouter(corpus, RouterConfig(history_allowance=0, snippet_tokens=64),
                      Capabilities(context_window=int(sys.argv[2])), 100)
print(json.dumps([router.route(q).to_dict() for q in json.loads(sys.argv[3])], sort_keys=True))
"""


def test_same_questions_route_the_same_across_processes(corpus: CompiledCorpus) -> None:
    window = one_block_each(corpus)
    questions = [*QUESTIONS, "stars and bread", "garden soil and TCP", *QUESTIONS]
    runs = [
        subprocess.run(
            [sys.executable, "-c", SCRIPT, str(corpus.root), str(window.context_window), json.dumps(questions)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        for _ in range(2)
    ]
    here = HybridRouter(corpus, CONFIG, window, OUT)
    local = json.dumps([here.route(q).to_dict() for q in questions], sort_keys=True)
    assert runs[0] == runs[1] == local + "\n"
    assert len({(r["mode"], *r["blocks"]) for r in json.loads(local)}) >= 3  # it is not trivially constant


def test_create_router_gives_the_hybrid_router(corpus: CompiledCorpus) -> None:
    from ragcache.router import create_router

    small = create_router(corpus, CONFIG, one_block_each(corpus), OUT)
    assert isinstance(small, HybridRouter) and small.mode == "blocks"
    assert small.route(QUESTIONS[2]).block_ids == ("category:networking",)
    assert create_router(corpus, CONFIG, window_for(corpus, corpus.total_tokens + 100), OUT).mode == "full"


def test_a_conversation_keeps_its_route_where_the_question_alone_would_move(corpus: CompiledCorpus) -> None:
    from ragcache.app import RagCache
    from ragcache.config import BackendConfig, Config

    router = HybridRouter(corpus, CONFIG, one_block_each(corpus), OUT)
    config = Config(backend=BackendConfig(max_output_tokens=OUT))
    rag = RagCache(config, corpus, None, router)  # type: ignore[arg-type]  # planning never calls the backend
    first = rag.plan_turn(QUESTIONS[0])
    assert first.route.block_ids == ("category:gardening",)
    follow = rag.plan_turn("Do they need sun?", conversation=first.conversation.answered("ok"))
    assert follow.route.block_ids == ("category:gardening",) and follow.route.sticky
    assert rag.route("Do they need sun?").block_ids == ("category:astronomy",)
    assert [p.route.mode for p in rag.prefixes()] == ["blocks"] * len(corpus.category_block_ids())
