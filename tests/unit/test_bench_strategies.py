"""Bench strategies on the real small corpus: naive RAG's per-request budget matches ragcache's route
(equal tokens or equal cost), without counting demand, following sessions.

No generation happens here: only routing (ragcache) and retrieval (naive RAG) over a real index.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragcache.backends.base import GenerationOptions
from ragcache.bench.strategies import NaiveRagStrategy, RagcacheStrategy
from ragcache.bench.workload import WorkloadItem
from ragcache.errors import ConfigError
from ragcache.prompt import Message

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = [
    "Does SQLite need a separate server process?",
    "Which storage classes does SQLite use?",
    "How do I create an AUTOINCREMENT field?",
    "Can several processes open the same database at once?",
]


@pytest.fixture(scope="module")
def category_app(tmp_path_factory: pytest.TempPathFactory, local_model: Path) -> Iterator[Any]:
    """corpora/small with its chunk index, routed to one-block runs (so budgets differ per question)."""
    from ragcache.app import RagCache
    from ragcache.config import Config, RouterConfig
    from ragcache.corpus.compile import build_corpus
    from ragcache.router.index import index_step

    out = tmp_path_factory.mktemp("small-indexed") / "build"
    build_corpus(ROOT / "corpora" / "small", out, steps=(index_step(RouterConfig().embedding_model),))
    router = RouterConfig(mode="blocks", window_tokens=2400, history_allowance=0, snippet_tokens=256)
    rag = RagCache.from_config(Config(corpus=out, build_dir=out, router=router))
    try:
        yield rag
    finally:
        rag.close()


def test_naive_budget_matches_ragcache_route_at_equal_tokens_and_equal_cost(category_app: Any) -> None:
    options = GenerationOptions(max_tokens=4)
    tokens, cost = NaiveRagStrategy(category_app, options, match="tokens"), NaiveRagStrategy(category_app, options)
    largest = max(c.tokens for c in category_app.corpus.chunks)
    demand = category_app.router.demand.to_dict()
    for i, question in enumerate(QUESTIONS):
        route = category_app.plan_turn(question, observe=False).route  # a conversation's first turn
        stable = sum(category_app.corpus.block(b).tokens for b in route.block_ids)
        tail = sum(s.tokens for s in route.snippets)
        assert stable > 0 and tail > 0, route  # a run plus a tail, so the two matches differ
        item = WorkloadItem(f"s{i}", 0, question)
        assert tokens._budget(item, ()) == stable + tail  # ragcache's own corpus tokens for this request
        assert cost._budget(item, ()) == int(0.1 * stable) + tail < stable + tail  # cached prefix read at 0.1x
        used = sum(c.tokens for c in tokens.retrieve(question, stable + tail))
        assert stable + tail - largest < used <= stable + tail, (question, stable + tail, used)
    assert category_app.router.demand.to_dict() == demand  # matching a budget is not traffic


def test_naive_budget_follows_the_conversation_turn_on_later_turns(category_app: Any) -> None:
    naive = NaiveRagStrategy(category_app, GenerationOptions(max_tokens=4), match="tokens")
    first = category_app.route(QUESTIONS[0])
    other = [q for q in QUESTIONS[1:] if category_app.route(q).block_ids != first.block_ids]
    assert other, "no question routes away from the first one's run"  # the follow-up alone would route elsewhere
    naive._budget(WorkloadItem("s", 0, QUESTIONS[0]), ())
    history = (Message("user", QUESTIONS[0]), Message("assistant", "ok"))
    budget = naive._budget(WorkloadItem("s", 1, other[0]), history)
    turn = category_app.plan_turn(other[0], history=history, observe=False)
    kept = turn.route  # ragcache's second turn: the first turn's prefix, unless the conversation moved
    assert turn.turn == 2 and (kept.block_ids == first.block_ids) != turn.moved
    assert budget == sum(category_app.corpus.block(b).tokens for b in kept.block_ids) + sum(
        s.tokens for s in kept.snippets
    )
    with pytest.raises(ConfigError, match="cost, tokens"):
        NaiveRagStrategy(category_app, GenerationOptions(max_tokens=4), match="chunks")


def test_ragcache_warm_set_comes_from_the_routes_of_the_warm_up_items(category_app: Any) -> None:
    strategy = RagcacheStrategy(category_app, GenerationOptions(max_tokens=4))
    items = [WorkloadItem(f"s{i}", 0, q) for i, q in enumerate(QUESTIONS[:2])]
    traffic = strategy.traffic_of(items)
    routed = {category_app.route(q).block_ids for q in QUESTIONS[:2]}
    assert set(traffic.ranked()) == routed
    warm = category_app.warm_set(traffic)
    assert {p.route.block_ids for p in warm} == routed  # no canonical-order filler once traffic exists
