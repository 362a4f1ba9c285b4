"""Router v4: runs priced by the cache state the router observes on its callers' clock.

Real builds of the four-topic corpus (tests/router_corpus.py) with the real index; prices
from the vendor tables (claude-sonnet-4-5 at 5 minutes, with the minimum cacheable prefix
set to 0 so that the small test blocks are cacheable), charges checked against the real
cost replay (``ragcache.cache.replay``).
"""

from __future__ import annotations

import math

import pytest
from router_corpus import build_topics
from test_router_policy import CONFIG, OUT, QUESTIONS, budget_for_runs, one_block_each, window_for

from ragcache.backends.base import Capabilities
from ragcache.backends.profile import profile_for
from ragcache.cache.replay import ReplayRequest, arrivals, replay, rules_from
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.router.policy import HybridRouter

PROFILE = profile_for("anthropic", "claude-sonnet-4-5", "5m", min_cacheable_tokens=0)
TTL = 300.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CompiledCorpus:
    return build_topics(tmp_path_factory.mktemp("observed")).corpus


def router_for(corpus: CompiledCorpus, caps: Capabilities | None = None, **settings: object) -> HybridRouter:
    config = CONFIG.model_copy(update=settings) if settings else CONFIG
    return HybridRouter(corpus, config, caps or one_block_each(corpus, config), OUT, profile=PROFILE)


def test_a_warm_run_is_priced_at_the_read_price_until_its_ttl_ends(corpus: CompiledCorpus) -> None:
    router = router_for(corpus)
    run = router.runs[0]
    cold = router.run_prices(now=0.0)
    assert cold[0] > router.read_price
    router.mark_warm(("instructions", *run.block_ids), now=0.0)  # non-corpus blocks are ignored
    assert router.run_prices(now=TTL - 1)[0] == pytest.approx(router.read_price)
    assert router.run_prices(now=TTL)[0] > router.read_price  # expired: a write again
    assert (router.run_prices(now=TTL)[1:] == cold[1:]).all()  # the others were never sent


def test_a_read_refreshes_the_run_and_the_route_records_what_it_paid(corpus: CompiledCorpus) -> None:
    router = router_for(corpus)
    first = router.route(QUESTIONS[0], now=0.0)
    assert first.mode == "blocks" and first.pricing["warm"] == 0.0
    assert first.pricing["charge"] == pytest.approx(router.write_price)  # the first send writes the run
    second = router.route(QUESTIONS[0], now=TTL - 10)
    third = router.route(QUESTIONS[0], now=2 * TTL - 20)  # alive only because the second read refreshed it
    assert second.block_ids == third.block_ids == first.block_ids
    assert second.pricing["charge"] == third.pricing["charge"] == pytest.approx(router.read_price)


def test_the_observed_rate_replaces_the_prior(corpus: CompiledCorpus) -> None:
    router = router_for(corpus, questions_per_ttl=50.0)
    assert router.observed_rate() == pytest.approx(50.0 / TTL)  # before any traffic: the setting
    for i in range(5):
        router.route(QUESTIONS[i % 4], now=30.0 * i)
    assert router.observed_rate() == pytest.approx(1 / 30)
    router.route(QUESTIONS[0], observe=False, now=1000.0)  # not observed: not counted
    assert router.observed_rate() == pytest.approx(1 / 30)


def test_without_a_clock_routes_are_priced_by_the_prior_as_before(corpus: CompiledCorpus) -> None:
    router, clocked = router_for(corpus), router_for(corpus)
    route = router.route(QUESTIONS[1])
    assert router.run_prices().tolist() == router._prices(router.demand.counts).tolist()
    assert "charge" not in route.pricing and router.observed_rate() == pytest.approx(50.0 / TTL)
    assert clocked.route(QUESTIONS[1], now=0.0).block_ids == route.block_ids


def test_unrelated_questions_spread_over_runs_end_up_top_k(corpus: CompiledCorpus) -> None:
    """One question every 2 minutes cycling over the four runs: no run is asked for again within its
    5-minute TTL, so each would be written per question; the router sees it and routes top-k."""
    router = router_for(corpus)
    routes = [router.route(QUESTIONS[i % 4], now=120.0 * i) for i in range(12)]
    assert [r.mode for r in routes[-8:]] == ["topk"] * 8
    assert "no run pays" in routes[-1].reason
    topk = router_for(corpus, mode="topk", snippet_tokens=int(CONFIG.fill * router.budget))
    assert routes[-1].snippets == topk.route(QUESTIONS[11 % 4]).snippets  # exactly top-k filling the window


def test_questions_concentrated_on_one_run_use_it_warm(corpus: CompiledCorpus) -> None:
    router = router_for(corpus)
    routes = [router.route(QUESTIONS[0], now=120.0 * i) for i in range(12)]
    assert {r.mode for r in routes} == {"blocks"} and len({r.block_ids for r in routes}) == 1
    assert [r.pricing["warm"] for r in routes] == [0.0] + [1.0] * 11


def test_self_hosted_runs_are_warm_while_they_fit_the_kv_capacity(corpus: CompiledCorpus) -> None:
    vllm = profile_for("vllm", "Qwen/Qwen2.5-7B-Instruct")
    assert vllm.ttl_s is None and vllm.self_hosted
    config = CONFIG.model_copy(update={"kv_capacity_tokens": max(r.tokens for r in router_for(corpus).runs)})
    router = HybridRouter(corpus, config, one_block_each(corpus, config), OUT, profile=vllm)
    first, second = router.runs[0], router.runs[1]
    router.mark_warm(first.block_ids, now=0.0)
    assert router.run_prices(now=1e6)[0] == router.read_price  # no TTL: warm until evicted
    router.mark_warm(second.block_ids, now=1.0)  # only one run fits: the first is evicted (LRU)
    prices = router.run_prices(now=2.0)
    assert prices[1] == router.read_price and prices[0] > router.read_price


def _nested(corpus: CompiledCorpus) -> Capabilities:
    """A window whose runs hold three blocks: the last run is topped up with the corpus head (nested)."""
    tokens = [corpus.block(b).tokens for b in corpus.category_block_ids()]
    return window_for(corpus, budget_for_runs(max(sum(tokens[i : i + 3]) for i in range(len(tokens) - 2))))


@pytest.mark.parametrize("shape", ["one-block runs", "nested runs"])
def test_the_price_the_router_assumed_is_what_the_replay_charged(corpus: CompiledCorpus, shape: str) -> None:
    """A cold-start burst: 30 questions at 60/min, routed on the replay's clock.

    The router's charges (write on what no warm prefix shares, read on the rest) follow the replay's
    rules (TTL from the last send, a read refreshes, a shared leading prefix is read, the minimum
    cacheable prefix, the lookback), so the totals agree to 1e-6 relative: the charge is recorded
    rounded to 6 decimals. Not modelled (and absent here): storage billing (Gemini) and the
    instructions block in front, which the eval's prompts add and which is below any minimum.
    """
    nested = shape == "nested runs"
    router = router_for(corpus, _nested(corpus), mode="blocks") if nested else router_for(corpus)
    if nested:
        assert len(router.runs) > 1 and router.runs[-1].head > 0
    extra = ["Which planet has rings of ice?", "How do I make a tomato sauce?", "What does a DNS resolver ask?"]
    questions = [(QUESTIONS + extra)[(i * 5) % 7] for i in range(30)]
    times = arrivals(len(questions), 60.0)
    routes = [router.route(q, now=t) for q, t in zip(questions, times, strict=True)]
    blocks = [tuple((b, corpus.block(b).tokens) for b in r.block_ids) for r in routes]
    charged = replay(
        [ReplayRequest(t, b, r.tokens.tail) for t, b, r in zip(times, blocks, routes, strict=True)],
        rules := rules_from(PROFILE),
    )
    assumed = sum(r.pricing["charge"] * r.tokens.stable + r.tokens.tail for r in routes) * rules.input / 1e6
    assert charged.cache_write_tokens > 0 and charged.cached_read_tokens > 0  # both kinds were charged
    assert {r.pricing["warm"] for r in routes} == {0.0, 1.0}
    assert math.isclose(assumed, charged.usd, rel_tol=1e-6)


def test_a_new_conversation_routes_on_the_planners_clock(corpus: CompiledCorpus) -> None:
    from ragcache.config import ConversationConfig
    from ragcache.conversation import ConversationPlanner

    router = router_for(corpus, _nested(corpus), mode="blocks")
    planner = ConversationPlanner.for_corpus(corpus, router, ConversationConfig(), OUT)
    planner.clock = lambda: 100.0
    plan = planner.plan(None, QUESTIONS[0])
    assert plan.route.mode == "blocks" and router.observed_rate() == pytest.approx(50.0 / TTL)  # one arrival
    again = router.route(QUESTIONS[0], observe=False, now=100.0 + TTL - 1)
    assert again.block_ids == plan.route.block_ids and again.pricing["warm"] == 1.0  # the first turn sent it


def test_eval_router_reports_the_price_the_router_assumed_beside_the_replay(corpus: CompiledCorpus) -> None:
    """``eval-router`` rows carry ``assumed_usd_per_1k``: the router's recorded charges, priced.

    Its prompts add the instructions block in front of every prefix, which the router does not price
    (a cold run's replay reads it from any live prefix; the router counts it at the run's charge),
    so the two agree only to within the instructions' share of the prompt: 5% here.
    """
    from ragcache.router.embeddings import load_embedder
    from ragcache.router.evaluate import QAItem, TopK, evaluate_windows
    from ragcache.router.index import open_index

    items = [QAItem(str(i), q, ("gardening/tomatoes.md",)) for i, q in enumerate(QUESTIONS * 5)]
    caps = one_block_each(corpus)
    report = evaluate_windows(
        corpus,
        items,
        lambda window: router_for(corpus, caps),
        TopK(corpus, open_index(corpus, load_embedder()), items, CONFIG.dense_weight),
        [caps.context_window],
        rules=rules_from(PROFILE),
        rate_per_min=60,
        reserved_tokens=OUT,
    )
    router = report["windows"][0]["router"]
    assert router["assumed_usd_per_1k"] == pytest.approx(router["usd_per_1k"], rel=0.05)
