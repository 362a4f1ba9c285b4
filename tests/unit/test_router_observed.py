"""Router v4: runs priced by the cache state the router observes on its callers' clock.

Real builds of the four-topic corpus (tests/router_corpus.py) with the real index; prices
from the vendor tables (claude-sonnet-4-5 at 5 minutes, with the minimum cacheable prefix
set to 0 so that the small test blocks are cacheable), charges checked against the real
cost replay (``ragcache.cache.replay``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from router_corpus import build_topics
from test_router_policy import CONFIG, EXPECTED, OUT, QUESTIONS, budget_for_runs, one_block_each, window_for

from ragcache.backends.base import Capabilities
from ragcache.backends.profile import profile_for
from ragcache.cache.replay import ReplayRequest, arrivals, replay, rules_from
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.prompt import Route
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
    assert math.isclose(router.spend.paid * rules.input / 1e6, charged.usd, rel_tol=1e-6)  # what the floor sees


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
    (a cold run's replay reads it from any live prefix, the router counts it at the run's charge; a
    top-k prompt's replay may read it too, the router counts it as plain input), so per question the
    two differ by at most the instructions' tokens priced between the read and the write price.
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
    rules = rules_from(PROFILE)
    instructions = corpus.block("instructions").tokens
    bound = 1000 * instructions * (rules.cache_write - rules.cached_read) / 1e6  # $ per 1k questions
    assert 0 <= router["assumed_usd_per_1k"] - router["usd_per_1k"] <= bound


def test_a_warm_read_holds_top_k_at_the_mean_the_router_has_spent(corpus: CompiledCorpus) -> None:
    """Top-k at equal cost gets the router's *mean* cost per question. A warm read costs far less than
    a mean raised by top-k routes, so its walk goes as deep as top-k of that mean (``pricing["floor"]``),
    not only as deep as its own read price buys (docs/architecture.md "Router")."""

    def warm_read(expensive: int) -> tuple[HybridRouter, Route]:
        router = router_for(corpus, top_k=0, fill=0.3)  # no cap and little top-up: the walk decides the tail
        for i in range(3):  # the gardening run is written, then read
            router.route(QUESTIONS[0], now=float(i))
        for _ in range(expensive):  # top-k routes the router sent before, 250 plain tokens each
            router.spend.record((), 1.0, 1.0, 0, 250)
        return router, router.route(QUESTIONS[0], now=3.0)

    router, route = warm_read(expensive=6)
    cheap = warm_read(expensive=0)[1]
    assert route.block_ids == cheap.block_ids == (EXPECTED[0],) and route.pricing["warm"] == 1.0
    floor = route.pricing["floor"]
    assert floor > route.pricing["price"] * route.tokens.stable + cheap.tokens.tail  # deeper than its price buys
    order = router.ranking(router.fused_scores(((QUESTIONS[0], 1.0),)))
    top = {corpus.chunks[i].id for i in order[np.cumsum(router._chunk_tokens[order]) <= floor]}
    inside = {c.id for c in corpus.chunks if c.block_id in route.block_ids}
    assert top <= inside | {s.chunk_id for s in route.snippets}  # the prompt holds top-k of the mean
    assert not top <= inside | {s.chunk_id for s in cheap.snippets}  # which its own price did not buy


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gpt-5.4"])
def test_no_second_write_while_the_first_has_not_paid_for_itself(corpus: CompiledCorpus, model: str) -> None:
    """Anthropic charges a write 1.25x: after the first run is written, a question for another cold run
    goes top-k until reads of the first have repaid it; OpenAI's write costs what plain input does, so
    there is nothing to repay and the rule never holds a write back (the next test: what does)."""
    vendor = "anthropic" if model.startswith("claude") else "openai"
    profile = profile_for(vendor, model, None, min_cacheable_tokens=0)
    router = HybridRouter(corpus, CONFIG, one_block_each(corpus), OUT, profile=profile)
    times = arrivals(8, 60.0)
    routes = [router.route(q, now=t) for q, t in zip(QUESTIONS * 2, times, strict=True)]
    assert routes[0].mode == "blocks" and routes[0].pricing["charge"] == pytest.approx(router.write_price)
    if profile.write_multiplier > 1:
        assert routes[1].mode == "topk" and "not paid for themselves" in routes[1].reason
        later = [r for r in routes[2:] if r.pricing.get("warm") == 0.0 and r.mode == "blocks"]
        assert later and later[0].block_ids != routes[0].block_ids  # written once reads had repaid the first
    else:
        assert router.spend.runs_paid and not any("not paid" in r.reason for r in routes)


def test_a_write_at_no_premium_reaches_top_k_at_the_mean_really_paid(corpus: CompiledCorpus) -> None:
    """OpenAI charges a write what plain input costs, so the write rule never holds one back; each such
    write must then reach top-k at the mean actually paid (the debts of writes still being repaid
    included), not only at the mean counted at the prices assumed."""
    profile = profile_for("openai", "gpt-5.4", None, min_cacheable_tokens=0)
    config = CONFIG.model_copy(update={"top_k": 0, "fill": 0.3})
    router = HybridRouter(corpus, config, one_block_each(corpus, config), OUT, profile=profile)
    first = router.route(QUESTIONS[0], now=0.0)  # writes the gardening run at 1.0x: it owes most of it
    assert first.pricing["charge"] == 1.0 and router.spend.open_bet
    assert router.spend.paid_mean_tokens > router.spend.mean_tokens
    paid = router.spend.paid_mean_tokens
    second = router.route(QUESTIONS[1], now=1.0)  # a cold run of its own: another write at no premium
    assert second.mode == "blocks" and second.block_ids != first.block_ids and second.pricing["warm"] == 0.0
    assert second.pricing["floor"] == pytest.approx(paid, abs=0.1)  # not the lower mean counted
    order = router.ranking(router.fused_scores(((QUESTIONS[1], 1.0),)))
    top = {corpus.chunks[i].id for i in order[np.cumsum(router._chunk_tokens[order]) <= paid]}
    inside = {c.id for c in corpus.chunks if c.block_id in second.block_ids}
    assert top <= inside | {s.chunk_id for s in second.snippets}
