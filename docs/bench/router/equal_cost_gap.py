"""Per question, what top-k at equal cost holds that the router's prompt does not (issue 23).

    .venv/bin/python docs/bench/router/equal_cost_gap.py --corpus corpora/sqlalchemy \
        --vendor-model claude-sonnet-4-5 --cells 10:131072,60:200000 [--qa FILE] [--v4]

For each cell (rate per minute : window) it routes the questions as ``eval-router`` does (the
replay's clock, starting cold), finds top-k's budget at the router's replayed $/1k, and prints each
question whose prompt lacks a gold page top-k at that budget holds: how it was routed, the price it
walked at and the charge it paid, its cost in uncached tokens against the router's mean, and the
pages missing. ``--v4`` routes with the walk floor and the write ledger turned off (router v4 as
measured before this change: it reproduces the check tables' figures of v4).
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from typing import Any

import numpy as np

from ragcache.backends.base import Capabilities
from ragcache.cache.replay import ReplayRequest, arrivals, replay, rules_for
from ragcache.config import load_config
from ragcache.corpus.store import load_corpus
from ragcache.router import create_router
from ragcache.router.embeddings import load_embedder
from ragcache.router.evaluate import TopK, budget_for_cost, gold_recall, load_qa, non_corpus_blocks, route_all
from ragcache.router.index import open_index


class _NoFloor:
    """A Spend that never holds a walk back: router v4 before issue 23's fix."""

    mean_tokens, runs_paid = 0.0, True

    def record(self, *args: Any) -> None: ...

    def settle(self, *args: Any) -> None: ...


def kind(route: Any) -> str:
    return "top-k" if route.mode == "topk" else "read" if route.pricing.get("warm") else "write"


def cell(corpus: Any, items: list, topk: TopK, cfg: Any, rules: Any, rate: float, window: int, v4: bool) -> None:
    times = arrivals(len(items), rate)
    settings = cfg.router.model_copy(
        update={"window_tokens": window, "questions_per_ttl": rate * rules.planning_ttl_s / 60}
    )
    caps = Capabilities(window, min_cacheable_tokens=rules.min_cacheable_tokens, ttl_s=rules.planning_ttl_s)
    router = create_router(corpus, settings, caps, cfg.backend.max_output_tokens, profile=rules.profile)
    if v4:
        router.spend = _NoFloor()
    routes: list = []
    route = router.route
    router.route = lambda q, **kw: routes.append(route(q, **kw)) or routes[-1]  # type: ignore[method-assign]
    prompts = route_all(router, corpus, items, times)
    cost = replay((ReplayRequest(t, p.blocks, p.tail_tokens) for t, p in zip(times, prompts, strict=True)), rules)
    stable = sum(t for _, t in non_corpus_blocks(corpus))
    budget = max(window - cfg.backend.max_output_tokens - cfg.router.history_allowance - stable, 0)
    equal = budget_for_cost(topk, cost.usd_per_1k, budget, times, rules)
    recall, _, _ = topk.figures(equal)
    spent = [(p.charge if p.charge is not None else 1.0) * (p.tokens - p.tail_tokens) + p.tail_tokens for p in prompts]
    mean = statistics.fmean(spent)
    mine = [gold_recall(p.documents, i.gold) for p, i in zip(prompts, items, strict=True)]
    mix = Counter(kind(r) for r in routes)
    print(
        f"\n{rules.model} {rate:g}/min {window:,}: router {statistics.fmean(mine):.4f}, top-k at equal cost "
        f"{statistics.fmean(recall):.4f} ({equal:,} tokens, ${cost.usd_per_1k:.2f}/1k); mean cost {mean:,.0f} "
        f"uncached tokens a question; routes: {dict(mix)}"
    )
    for n, (p, item, r) in enumerate(zip(prompts, items, routes, strict=True)):
        k = int(np.searchsorted(topk.cumulative[n], equal, side="right")) - 1
        held = {g for g, rank in zip(dict.fromkeys(item.gold), topk.first_rank[n], strict=True) if rank < k}
        if held - p.documents:
            print(
                f"  {item.id}: {kind(r)}, walked at {r.pricing.get('price', 1.0):.3f}, charged "
                f"{r.pricing.get('charge', 1.0):.3f}, cost {spent[n]:,.0f} ({spent[n] / mean:.2f}x the mean); "
                f"recall {mine[n]:.2f} vs {recall[n]:.2f}; missing {', '.join(sorted(held - p.documents))}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--qa", default=None)
    parser.add_argument("--vendor-model", default="claude-sonnet-4-5")
    parser.add_argument("--cells", required=True, help="rate:window pairs, e.g. 10:131072,60:200000")
    parser.add_argument("--v4", action="store_true", help="route without the floor and ledger (v4)")
    args = parser.parse_args()
    cfg = load_config(None)
    corpus = load_corpus(args.corpus)
    items = load_qa(args.qa or f"{args.corpus}/qa.jsonl", corpus)
    rules = rules_for(args.vendor_model)
    topk = TopK(corpus, open_index(corpus, load_embedder(cfg.router.embedding_model)), items, cfg.router.dense_weight)
    for pair in args.cells.split(","):
        rate, window = pair.split(":")
        cell(corpus, items, topk, cfg, rules, float(rate), int(window), args.v4)


if __name__ == "__main__":
    main()
