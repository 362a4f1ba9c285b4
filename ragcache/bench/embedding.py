"""Embedding throughput: the build's embedding backends side by side on the same chunks.

    python -m ragcache.bench.embedding [--corpus corpora/sqlite] [--chunks 200] [--repeat 3]
                                       [--threads N] [--models all-MiniLM-L6-v2#torch,all-MiniLM-L6-v2]

Embeds the first ``--chunks`` chunk texts of a built corpus with each backend,
``--repeat`` times, interleaved (so load on a shared machine hits them alike),
and prints the medians of chunks per wall second and per CPU second (CPU time
counts every thread of this process: the fairer figure when cores are shared)
and the ratio of each backend to the first. It is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from ragcache.corpus.store import load_corpus
from ragcache.router.embeddings import load_embedder
from ragcache.router.index import chunk_text

__all__ = ["bench_embedding", "main"]

DEFAULT_MODELS = "all-MiniLM-L6-v2#torch,all-MiniLM-L6-v2"


def bench_embedding(corpus_path: Path, models: list[str], *, chunks: int = 200, repeat: int = 3) -> dict[str, Any]:
    """Median chunks per wall second and per CPU second for each model spec, and ratios to the first."""
    corpus = load_corpus(corpus_path)
    texts = [chunk_text(corpus, c) for c in corpus.chunks[:chunks]]
    embedders = {spec: load_embedder(spec) for spec in models}
    for embedder in embedders.values():  # load weights, open sessions: not part of the rate
        embedder.embed(texts[:2])
    wall: dict[str, list[float]] = {spec: [] for spec in models}
    cpu: dict[str, list[float]] = {spec: [] for spec in models}
    for _ in range(repeat):
        for spec, embedder in embedders.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            embedder.embed(texts)
            wall[spec].append(len(texts) / (time.perf_counter() - started))
            cpu[spec].append(len(texts) / max(time.process_time() - cpu_started, 1e-9))
    rows = {
        spec: {
            "chunks_per_s": round(statistics.median(wall[spec]), 1),
            "chunks_per_cpu_s": round(statistics.median(cpu[spec]), 1),
            "model_id": embedders[spec].model_id,
        }
        for spec in models
    }
    first = rows[models[0]]
    for row in rows.values():
        row["ratio_wall"] = round(row["chunks_per_s"] / first["chunks_per_s"], 2)
        row["ratio_cpu"] = round(row["chunks_per_cpu_s"] / first["chunks_per_cpu_s"], 2)
    return {"corpus": corpus.name, "chunks": len(texts), "repeat": repeat, "models": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Embedding throughput of the build's backends, side by side.")
    parser.add_argument("--corpus", type=Path, default=Path("corpora/sqlite"))
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch (and so onnxruntime) threads")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated embedding model specs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = bench_embedding(args.corpus, args.models.split(","), chunks=args.chunks, repeat=args.repeat)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(f"{report['corpus']}: {report['chunks']} chunks, median of {report['repeat']}")
    for spec, row in report["models"].items():
        print(
            f"  {spec:<34} {row['chunks_per_s']:>7.1f} chunks/s ({row['ratio_wall']:.2f}x)"
            f"  {row['chunks_per_cpu_s']:>7.1f} chunks/CPU-s ({row['ratio_cpu']:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
