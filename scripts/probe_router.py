"""Quick probe of the router against fused top-k on a QA set, at several windows.

Usage (a build with its index, a QA file with ``question`` and ``gold``)::

    python scripts/probe_router.py <build> tests/data/sqlite_qa.jsonl [8192,32768,131072,200000] ['{"top_k": 16}']

Questions are replayed in order through one router per window (demand builds up
as in a server). Cost per question, in uncached-token units: a prefix's first use
is a cache write (1.25x), later uses are reads (0.1x), the tail is 1x; no TTL.
Top-k gets, per question, the router's tokens (equal tokens) or the router's mean
cost (equal cost). Fused scores are cached beside the build (``<build>.fused.npy``).
``ragcache eval-router`` is the full evaluation; this is the fast loop for tuning.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ragcache.backends.base import Capabilities
from ragcache.config import RouterConfig
from ragcache.corpus.store import load_corpus
from ragcache.router.embeddings import load_embedder
from ragcache.router.index import ChunkIndex, QueryScores
from ragcache.router.policy import HybridRouter


class CachedScores:
    """The router's index, answered from precomputed fused scores."""

    def __init__(self, fused: dict[str, np.ndarray]) -> None:
        self.fused = fused

    def scores(self, question: str, dense_weight: float = 0.5) -> QueryScores:
        return QueryScores(None, None, self.fused[question])  # type: ignore[arg-type]


def fused_scores(corpus, build: str, questions: list[str]) -> dict[str, np.ndarray]:
    path = Path(build.rstrip("/") + ".fused.npy")
    if path.exists():
        matrix = np.load(path)
    else:
        index = ChunkIndex.load(corpus, load_embedder())
        matrix = np.stack([index.scores(q, 0.5).fused for q in questions])
        np.save(path, matrix)
    return dict(zip(questions, matrix, strict=True))


def top_k_docs(corpus, fused: np.ndarray, tokens: int) -> set[str]:
    sizes = np.array([c.tokens for c in corpus.chunks])
    docs, left = set(), tokens
    for i in np.lexsort((np.arange(len(fused)), -fused)):
        if left < sizes.min():
            break
        if sizes[i] <= left:
            docs.add(corpus.chunks[i].doc_id)
            left -= int(sizes[i])
    return docs


def recall(gold: list[str], docs: set[str]) -> float:
    return sum(g in docs for g in gold) / len(gold)


def probe(corpus, items: list[dict], fused: dict[str, np.ndarray], window: int, settings: dict) -> dict:
    settings.pop("hot", None)  # an old knob: the router prices runs by demand now
    config, capabilities = RouterConfig(**settings), Capabilities(context_window=window)
    router = HybridRouter(corpus, config, capabilities, 256, index=CachedScores(fused))
    found, tokens, tails, costs, modes, seen = [], [], [], [], {}, set()
    for item in items:
        route = router.route(item["question"])
        found.append(recall(item["gold"], set(route.documents)))
        tokens.append(route.tokens.total)
        tails.append(route.tokens.tail)
        modes[route.mode] = modes.get(route.mode, 0) + 1
        costs.append((0.1 if route.block_ids in seen else 1.25) * route.tokens.stable + route.tokens.tail)
        seen.add(route.block_ids)
    cost = float(np.mean(costs))
    pairs = zip(items, tokens, strict=True)
    equal_tokens = [recall(it["gold"], top_k_docs(corpus, fused[it["question"]], t)) for it, t in pairs]
    equal_cost = [recall(it["gold"], top_k_docs(corpus, fused[it["question"]], int(cost))) for it in items]
    return {
        "window": window,
        "budget": router.budget,
        "runs": len(router.runs),
        "prefixes": len(seen),
        "modes": modes,
        "recall": round(float(np.mean(found)), 3),
        "tokens": int(np.mean(tokens)),
        "tail": int(np.mean(tails)),
        "fill": round(float(np.mean(tokens)) / router.budget, 3),
        "cost_tokens": int(cost),
        "topk_equal_tokens": round(float(np.mean(equal_tokens)), 3),
        "topk_equal_cost": round(float(np.mean(equal_cost)), 3),
    }


def main(argv: list[str]) -> None:
    build, qa = argv[1], argv[2]
    windows = [int(w) for w in (argv[3] if len(argv) > 3 else "8192,32768,131072,200000").split(",")]
    settings = json.loads(argv[4]) if len(argv) > 4 else {}
    corpus = load_corpus(build)
    items = [json.loads(line) for line in Path(qa).read_text(encoding="utf-8").splitlines() if line.strip()]
    fused = fused_scores(corpus, build, [it["question"] for it in items])
    for window in windows:
        print(json.dumps(probe(corpus, items, fused, window, dict(settings))), flush=True)


if __name__ == "__main__":
    main(sys.argv)
