"""HybridRouter: full vs category vs stack, determinism, stickiness, bounded prefixes.

Corpora are real builds (``build_corpus`` + the index step) of a four-topic corpus;
the index uses the real all-MiniLM-L6-v2 and BM25. Budgets are set through the
backend's declared context window, as a real backend would declare it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from router_corpus import build_topics

from ragcache.backends.base import Capabilities
from ragcache.config import RouterConfig
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.errors import RoutingError
from ragcache.router.policy import HybridRouter, context_budget

ROOT = Path(__file__).resolve().parents[2]
OUT = 100  # reserved output tokens
CONFIG = RouterConfig(history_allowance=0, snippet_tokens=64)
QUESTIONS = [
    "How deep should tomato seeds be sown?",
    "How does a telescope magnify faint galaxies?",
    "What happens in the TCP three-way handshake?",
    "How long should bread dough be kneaded?",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CompiledCorpus:
    return build_topics(tmp_path_factory.mktemp("policy")).corpus


def window_for(corpus: CompiledCorpus, corpus_tokens: int, config: RouterConfig = CONFIG) -> Capabilities:
    """A context window whose corpus budget is exactly ``corpus_tokens``."""
    overhead = context_budget(corpus, config, Capabilities(context_window=0), OUT)
    return Capabilities(context_window=corpus_tokens - overhead)


def biggest_block(corpus: CompiledCorpus) -> int:
    return max(corpus.block(b).tokens for b in corpus.category_block_ids())


def test_full_when_whole_corpus_fits(corpus: CompiledCorpus) -> None:
    router = HybridRouter(corpus, CONFIG, window_for(corpus, corpus.total_tokens), OUT)
    routes = [router.route(q) for q in QUESTIONS]
    assert {r.mode for r in routes} == {"full"}
    assert {r.block_ids for r in routes} == {("full",)}
    assert router.prefixes() == [("full",)]
    assert "fits" in routes[0].reason and routes[0].snippets == ()


def test_category_when_corpus_does_not_fit(corpus: CompiledCorpus) -> None:
    router = HybridRouter(corpus, CONFIG, window_for(corpus, biggest_block(corpus)), OUT)
    expected = ["category:gardening", "category:astronomy", "category:networking", "category:cooking"]
    for question, block in zip(QUESTIONS, expected, strict=True):
        route = router.route(question)
        assert route.mode == "category", route.to_dict()
        assert route.block_ids == (block,)
        assert route.margin is not None and route.margin > CONFIG.stack_margin
        assert route.scores[block] == max(route.scores.values())
        assert all(s.doc_id.split("/")[0] != block.split(":")[1] for s in route.snippets)
        assert sum(s.tokens for s in route.snippets) <= CONFIG.snippet_tokens
        assert [s.chunk_id for s in route.snippets] == sorted(
            (s.chunk_id for s in route.snippets), key=[c.id for c in corpus.chunks].index
        )


def test_forced_full_that_does_not_fit_is_a_routing_error(corpus: CompiledCorpus) -> None:
    config = CONFIG.model_copy(update={"mode": "full"})
    with pytest.raises(RoutingError, match="mode is 'full'"):
        HybridRouter(corpus, config, window_for(corpus, biggest_block(corpus), config), OUT)


def test_stack_of_two_close_blocks_in_corpus_order(corpus: CompiledCorpus) -> None:
    config = CONFIG.model_copy(update={"stack_margin": 1.0})  # every runner-up counts as close
    blocks = corpus.category_block_ids()
    two = sorted(corpus.block(b).tokens for b in blocks)[-2:]
    router = HybridRouter(corpus, config, window_for(corpus, sum(two), config), OUT)
    route = router.route("Which planets orbit the sun, and how do I grow tomatoes in the garden?")
    assert route.mode == "stack"
    assert set(route.block_ids) == {"category:astronomy", "category:gardening"}
    assert list(route.block_ids) == sorted(route.block_ids, key=blocks.index)  # corpus order
    assert route.block_ids in router.prefixes()
    # the same pair asked the other way round gives the same canonical stack
    assert router.route("How do I grow garden tomatoes, and which planets orbit the sun?").block_ids == route.block_ids


def test_no_stack_when_the_pair_does_not_fit(corpus: CompiledCorpus) -> None:
    config = CONFIG.model_copy(update={"stack_margin": 1.0})
    router = HybridRouter(corpus, config, window_for(corpus, biggest_block(corpus), config), OUT)
    route = router.route("Which planets orbit the sun, and how do I grow tomatoes in the garden?")
    assert route.mode == "category" and len(route.block_ids) == 1
    assert "exceeds" in route.reason
    assert all(len(p) == 1 for p in router.prefixes())


def test_no_block_fits_is_a_routing_error(corpus: CompiledCorpus) -> None:
    with pytest.raises(RoutingError, match="no category block fits"):
        HybridRouter(corpus, CONFIG, window_for(corpus, 10), OUT)


def test_five_turn_session_keeps_one_prefix_then_switches_once(corpus: CompiledCorpus) -> None:
    router = HybridRouter(corpus, CONFIG, window_for(corpus, biggest_block(corpus)), OUT)
    session = [
        "How deep should tomato seeds be sown?",
        "And how often should I water them?",
        "Do they need sun?",  # alone, this one leans to astronomy (the Sun)
        "What about compost?",
        "When are they ready to pick?",
        "How does a telescope magnify faint galaxies?",  # clear topic change
        "And what is a red giant?",
    ]
    routes, previous = [], None
    for question in session:
        previous = router.route(question, previous)
        routes.append(previous)
    prefixes = [r.block_ids for r in routes]
    assert len(set(prefixes[:5])) == 1 and prefixes[0] == ("category:gardening",), [r.to_dict() for r in routes]
    assert router.route(session[2]).block_ids != prefixes[0]  # so stickiness did the work on turn 3
    assert routes[2].sticky and "sticky_margin" in routes[2].reason
    assert prefixes[5] == ("category:astronomy",) and not routes[5].sticky
    switches = sum(a != b for a, b in pairwise(prefixes))
    assert switches == 1


def test_prefixes_bounded_and_cover_every_emitted_route(corpus: CompiledCorpus) -> None:
    config = CONFIG.model_copy(update={"stack_margin": 0.3})
    blocks = corpus.category_block_ids()
    router = HybridRouter(corpus, config, window_for(corpus, 2 * biggest_block(corpus), config), OUT)
    prefixes = router.prefixes()
    n = len(blocks)
    assert len(prefixes) == len(set(prefixes)) <= n + n * (n - 1) // 2
    assert [p for p in prefixes if len(p) == 1] == [(b,) for b in blocks]
    questions = [*QUESTIONS, "sun", "garden soil and TCP", "knife", "stars and bread", "DNS cache TTL"]
    previous = None
    for question in questions:
        for prev in (None, previous):
            route = router.route(question, prev)
            assert route.block_ids in prefixes, route.to_dict()
            previous = route
    assert router.prefixes(stacks=False) == [(b,) for b in blocks]


SCRIPT = """
import json, sys
from ragcache.backends.base import Capabilities
from ragcache.config import RouterConfig
from ragcache.corpus.store import load_corpus
from ragcache.router.policy import HybridRouter
corpus = load_corpus(sys.argv[1])
router = HybridRouter(corpus, RouterConfig(history_allowance=0, snippet_tokens=64, stack_margin=0.2),
                      Capabilities(context_window=int(sys.argv[2])), 100)
print(json.dumps([router.route(q).to_dict() for q in json.loads(sys.argv[3])], sort_keys=True))
"""


def test_same_question_routes_the_same_across_processes(corpus: CompiledCorpus) -> None:
    config = CONFIG.model_copy(update={"stack_margin": 0.2})
    window = window_for(corpus, 2 * biggest_block(corpus), config)
    questions = [*QUESTIONS, "stars and bread", "garden soil and TCP"]
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
    here = HybridRouter(corpus, config, window, OUT)
    local = json.dumps([here.route(q).to_dict() for q in questions], sort_keys=True)
    assert runs[0] == runs[1] == local + "\n"
    assert len({r["blocks"][0] for r in json.loads(local)}) >= 4  # it is not trivially constant


def test_create_router_gives_the_hybrid_router(corpus: CompiledCorpus) -> None:
    from ragcache.router import create_router

    small = create_router(corpus, CONFIG, window_for(corpus, biggest_block(corpus)), OUT)
    assert isinstance(small, HybridRouter) and small.mode == "category"
    assert small.route(QUESTIONS[2]).block_ids == ("category:networking",)
    assert create_router(corpus, CONFIG, window_for(corpus, corpus.total_tokens), OUT).mode == "full"
