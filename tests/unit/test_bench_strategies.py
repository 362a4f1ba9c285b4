"""Bench strategies on the real small corpus: naive RAG's per-request budget matches ragcache's corpus tokens.

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


def test_naive_chunks_match_ragcache_corpus_tokens_within_one_chunk(category_app: Any) -> None:
    naive = NaiveRagStrategy(category_app, GenerationOptions(max_tokens=4))
    largest = max(c.tokens for c in category_app.corpus.chunks)
    budgets = []
    for question in QUESTIONS:
        prompt = category_app.prompt_for(question)
        budget = naive.corpus_tokens(prompt)
        assert budget == naive._budget(question, ())  # the budget is ragcache's own count for this request
        used = sum(c.tokens for c in naive.retrieve(question, budget))
        assert budget - largest < used <= budget, (question, budget, used)
        budgets.append(budget)
    assert all(b > 0 for b in budgets)


def test_ragcache_warm_set_comes_from_the_routes_of_the_warm_up_items(category_app: Any) -> None:
    strategy = RagcacheStrategy(category_app, GenerationOptions(max_tokens=4))
    items = [WorkloadItem(f"s{i}", 0, q) for i, q in enumerate(QUESTIONS[:2])]
    traffic = strategy.traffic_of(items)
    routed = {category_app.route(q).block_ids for q in QUESTIONS[:2]}
    assert set(traffic.ranked()) == routed
    warm = category_app.warm_set(traffic)
    assert {p.route.block_ids for p in warm} == routed  # no canonical-order filler once traffic exists
