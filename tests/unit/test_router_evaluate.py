"""Evaluation arithmetic: recall, top-k budgets, equal-cost search, sessions, on a real (small) build.

The router in the per-window test is scripted (fixed routes) so every figure can be
computed by hand; top-k runs on the build's real chunk index.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from router_corpus import build_topics

from ragcache.cache.replay import CacheRules, ReplayRequest, arrivals, replay
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.errors import CorpusError
from ragcache.prompt import Route, Snippet
from ragcache.router.embeddings import load_embedder
from ragcache.router.evaluate import (
    QAItem,
    TopK,
    budget_for_cost,
    evaluate_windows,
    gold_recall,
    load_qa,
    non_corpus_blocks,
    route_all,
)
from ragcache.router.index import ChunkIndex, open_index

RULES = CacheRules("test", "anthropic", input=10.0, cached_read=1.0, cache_write=12.5, ttl_s=300.0)
ITEMS = [
    QAItem("a", "How deep are tomato seeds sown?", ("gardening/tomatoes.md", "gardening/soil.md")),
    QAItem("b", "What is the TCP three-way handshake?", ("networking/tcp.md",)),
    QAItem("c", "How is bread dough kneaded?", ("cooking/bread.md", "astronomy/stars.md")),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[CompiledCorpus, ChunkIndex]:
    corpus = build_topics(tmp_path_factory.mktemp("topics")).corpus
    return corpus, open_index(corpus, load_embedder())


class Scripted:
    """Routes question i to ``routes[i]`` and records the questions it was given."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes, self.given, self.i = routes, [], 0
        self.nows: list[float | None] = []

    def route(self, question: str, *, observe: bool = True, now: float | None = None) -> Route:
        self.given.append(question)
        self.nows.append(now)
        self.i += 1
        return self.routes[self.i - 1]

    def prefixes(self) -> list[tuple[str, ...]]:
        return [r.block_ids for r in self.routes]


def test_gold_recall_is_the_share_of_distinct_gold_documents() -> None:
    assert gold_recall(frozenset({"a", "b"}), ("a", "b", "c")) == pytest.approx(2 / 3)
    assert gold_recall(frozenset({"a"}), ("a", "a")) == 1.0
    assert gold_recall(frozenset(), ("a",)) == 0.0


def test_topk_figures_match_a_brute_force_fill(built: tuple[CompiledCorpus, ChunkIndex]) -> None:
    corpus, index = built
    topk = TopK(corpus, index, ITEMS, 0.5)
    for budget in (0, 40, 150, 400, 10_000):
        recalls, hits, tokens = topk.figures(budget)
        for item, recall, hit, used in zip(ITEMS, recalls, hits, tokens, strict=True):
            fused = index.scores(item.question, 0.5).fused
            picked, total = [], 0
            for i in np.lexsort((np.arange(len(fused)), -fused)):  # best chunks while the running total fits
                if total + corpus.chunks[i].tokens > budget:
                    break
                picked.append(corpus.chunks[i])
                total += corpus.chunks[i].tokens
            docs = {c.doc_id for c in picked}
            assert used == total <= budget
            assert recall == pytest.approx(gold_recall(frozenset(docs), item.gold))
            assert hit == bool(docs & set(item.gold))
    assert topk.figures(10_000)[0] == [1.0, 1.0, 1.0]  # the whole corpus holds every gold document


def test_equal_cost_budget_is_the_largest_that_does_not_cost_more(built: tuple[CompiledCorpus, ChunkIndex]) -> None:
    corpus, index = built
    topk = TopK(corpus, index, ITEMS, 0.5)
    times = arrivals(len(ITEMS), 10)
    target = replay(topk.requests(200, times), RULES).usd_per_1k
    found = budget_for_cost(topk, target, 10_000, times, RULES)
    assert replay(topk.requests(found, times), RULES).usd_per_1k <= target
    assert replay(topk.requests(found + 1, times), RULES).usd_per_1k > target
    assert budget_for_cost(topk, 1e9, 300, times, RULES) == 300  # capped by the window


def test_per_window_figures_by_hand(built: tuple[CompiledCorpus, ChunkIndex]) -> None:
    corpus, index = built
    blocks = corpus.category_block_ids()  # astronomy, cooking, gardening, networking
    garden, net = blocks[2], blocks[3]
    snip = Snippet("cooking/bread.md#0", "cooking/bread.md", "text", 0.9, tokens=50)
    routes = [Route("category", (garden,)), Route("category", (net,)), Route("category", (garden,), snippets=(snip,))]
    scripted = Scripted(routes)
    report = evaluate_windows(
        corpus,
        ITEMS,
        lambda w: scripted,
        TopK(corpus, index, ITEMS, 0.5),
        [4000],
        rules=RULES,
        rate_per_min=10,
        reserved_tokens=100,
    )
    row = report["windows"][0]
    router = row["router"]
    stable = sum(t for _, t in non_corpus_blocks(corpus))
    tok = {b: corpus.block(b).tokens for b in blocks}
    assert router["recall"] == pytest.approx((1.0 + 1.0 + 0.5) / 3, abs=1e-4)  # c: bread via the snippet, stars missing
    assert router["hit_rate"] == 1.0 and router["distinct_prefixes"] == 2
    corpus_tokens = [tok[garden], tok[net], tok[garden] + 50]
    assert router["prompt_tokens_mean"] == pytest.approx(stable + sum(corpus_tokens) / 3, abs=0.05)
    assert router["budget_used_share"] == pytest.approx(sum(corpus_tokens) / 3 / (4000 - 100 - stable), abs=1e-4)
    head = non_corpus_blocks(corpus)
    times = arrivals(3, 10)
    assert scripted.nows == times  # the router routes on the replay's clock (router v4)
    expected = replay(
        [
            ReplayRequest(times[0], (*head, (garden, tok[garden])), 0),
            ReplayRequest(times[1], (*head, (net, tok[net])), 0),
            ReplayRequest(times[2], (*head, (garden, tok[garden])), 50),
        ],
        RULES,
    )
    assert router["usd_per_1k"] == pytest.approx(expected.usd_per_1k, abs=1e-4)
    equal_cost = row["topk_equal_cost"]
    assert equal_cost["usd_per_1k"] <= router["usd_per_1k"] + 1e-4
    assert row["topk_equal_tokens"]["corpus_budget"] == round(sum(corpus_tokens) / 3)
    assert set(row) >= {"window", "router", "topk_equal_tokens", "topk_equal_cost"}


def test_every_question_is_routed_alone_in_arrival_order(built: tuple[CompiledCorpus, ChunkIndex]) -> None:
    """eval-router measures single questions (sessions are eval-chat's: conversations pin their route)."""
    corpus, _ = built
    blocks = corpus.category_block_ids()
    routes = [Route("category", (b,)) for b in blocks[:4]]
    items = [QAItem(str(i), f"q{i}", ("cooking/bread.md",), s) for i, s in enumerate(["x", "y", "x", None])]
    router = Scripted(routes)
    prompted = route_all(router, corpus, items)
    assert router.given == ["q0", "q1", "q2", "q3"]
    assert prompted[1].documents == frozenset(corpus.documents_of((blocks[1],)))


def test_qa_files_read_both_gold_keys_and_errors_name_the_place(
    built: tuple[CompiledCorpus, ChunkIndex], tmp_path: Path
) -> None:
    corpus, _ = built
    good = tmp_path / "qa.jsonl"
    rows = [{"question": "q1", "gold_doc_ids": ["cooking/bread.md"], "session": 7}, {"question": "q2", "gold": ["dns"]}]
    good.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    items = load_qa(good)
    assert [(i.id, i.gold, i.session) for i in items] == [("1", ("cooking/bread.md",), "7"), ("2", ("dns",), None)]
    with pytest.raises(CorpusError, match=r"gold documents not in corpus 'topics': dns"):
        load_qa(good, corpus)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "gold": ["a"]}\n{"question": "no gold"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: expected"):
        load_qa(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"question": "q", "gold_doc_ids": []}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"empty\.jsonl:1: .*non-empty list"):
        load_qa(empty)
