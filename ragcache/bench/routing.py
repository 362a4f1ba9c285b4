"""Routing latency: how long ``HybridRouter.route`` adds per question (target: < 20 ms p50).

    python -m ragcache.bench.routing [--corpus corpora/sqlite] [--qa tests/data/sqlite_qa.jsonl]
                                     [--repeat 3] [--window 8192] [--json]
    python -m ragcache.bench.routing --synthetic 10k,100k,1m [--questions 200] [--json]

Loads a built corpus with its index (build it first with ``ragcache build``),
warms the embedding model with one question, then times every QA question
``--repeat`` times: the whole route, and its parts (query embedding, fused chunk
scores, policy). Also times a follow-up turn's tail (two questions scored, then ``tail``).
Prints medians and p95 in milliseconds; it is a benchmark, not a test.
``--synthetic`` times the index at scale instead (routing_scale.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from ragcache.backends.base import Capabilities
from ragcache.bench.metrics import percentile
from ragcache.config import RouterConfig
from ragcache.corpus.store import load_corpus
from ragcache.router.evaluate import load_qa
from ragcache.router.policy import HybridRouter

__all__ = ["bench_routing", "main"]


def _ms(samples: list[float]) -> dict[str, float]:
    values = [s * 1000 for s in samples]
    return {"p50_ms": round(percentile(values, 50), 2), "p95_ms": round(percentile(values, 95), 2)}


def bench_routing(corpus_path: Path, qa_path: Path, *, repeat: int = 3, window: int = 8192) -> dict[str, Any]:
    """Time routing over a QA set; returns the figures as a dict."""
    corpus = load_corpus(corpus_path)
    questions = [item.question for item in load_qa(qa_path, corpus)]
    config = RouterConfig()
    started = time.perf_counter()
    router = HybridRouter(corpus, config, Capabilities(context_window=window), 256)
    router.route(questions[0])  # loads the embedding model and the index
    load_s = time.perf_counter() - started
    parts: dict[str, list[float]] = {"route": [], "embed": [], "scores": [], "turn_tail": []}
    previous = questions[0]
    for _ in range(repeat):
        for question in questions:
            t0 = time.perf_counter()
            router.index.embedder.embed_query(question)
            t1 = time.perf_counter()
            router.index.scores(question, config.dense_weight)
            t2 = time.perf_counter()
            router.route(question)
            t3 = time.perf_counter()
            fused = router.fused_scores(((question, 1.0), (previous, 0.5)))  # a follow-up turn's query
            router.tail(fused, (), 2048)
            t4 = time.perf_counter()
            previous = question
            parts["embed"].append(t1 - t0)
            parts["scores"].append(t2 - t1)
            parts["route"].append(t3 - t2)
            parts["turn_tail"].append(t4 - t3)
    return {
        "corpus": corpus.name,
        "mode": router.mode,
        "chunks": len(corpus.chunks),
        "blocks": len(router.blocks),
        "questions": len(questions),
        "repeat": repeat,
        "load_s": round(load_s, 2),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        **{name: _ms(samples) for name, samples in parts.items()},
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m ragcache.bench.routing``)."""
    parser = argparse.ArgumentParser(description="Routing latency per question (p50/p95 ms).")
    parser.add_argument("--corpus", type=Path, default=Path("corpora/sqlite"))
    parser.add_argument("--qa", type=Path, default=Path("tests/data/sqlite_qa.jsonl"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--window", type=int, default=8192)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--synthetic", help="chunk counts of synthetic corpora, e.g. 10k,100k,1m (routing_scale.py)")
    parser.add_argument("--questions", type=int, default=200, help="questions per synthetic corpus")
    args = parser.parse_args(argv)
    if args.synthetic:
        from ragcache.bench.routing_scale import bench_scale, parse_sizes, print_scale

        try:
            sizes = parse_sizes(args.synthetic)
        except ValueError as exc:
            parser.error(str(exc))
        print_scale([bench_scale(n, args.questions) for n in sizes], args.json)
        return
    result = bench_routing(args.corpus, args.qa, repeat=args.repeat, window=args.window)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    print(
        f"{result['corpus']}: {result['questions']} questions x {result['repeat']}, {result['chunks']} chunks, "
        f"{result['blocks']} blocks, mode {result['mode']}; model+index load {result['load_s']} s"
    )
    print(f"{'part':<14}{'p50 ms':>10}{'p95 ms':>10}")
    for name in ("embed", "scores", "route", "turn_tail"):
        print(f"{name:<14}{result[name]['p50_ms']:>10.2f}{result[name]['p95_ms']:>10.2f}")
    verdict = "meets" if result["route"]["p50_ms"] < 20 else "MISSES"
    print(f"route p50 {result['route']['p50_ms']:.2f} ms {verdict} the < 20 ms target")


if __name__ == "__main__":
    main()
