"""Routing at scale on synthetic corpora: open time, p50/p95 per question, approximate vs exact recall@k.

    python -m ragcache.bench.routing --synthetic 10k,100k,1m [--questions 200] [--json]

A synthetic corpus of N chunks is generated deterministically (numpy's PCG64 seeded
with N; nothing depends on the clock): 384-dimensional unit vectors drawn around
N/500 random topic centres (a real embedding space is clustered; uniform random
vectors would make every index look bad), and 32 tokens per chunk from a synthetic
vocabulary of 50,000 words (16 from its topic's 200 words, 16 from a Zipf tail).
Chunks form blocks of 16 and blocks runs of 32 (the last run padded with the
corpus head). A question is a chunk's vector plus noise and 4 of its words. The
index is the router's (search.py): exact below ``APPROX_MIN_CHUNKS`` chunks, IVF
above, opened by memory-mapping; BM25 is bm25s's, scored from the postings. Query
embedding is not included (vectors are given): ``python -m ragcache.bench.routing``
on a real corpus times it. Generated indexes are kept under
``~/.cache/ragcache/bench-routing`` so a second run measures opening only.

Per question, *route* = dense pool search + BM25 postings + fusion of the best 32
chunks + run coverage (:class:`RunLookup`): what a route needs from the index.
*exact* is the linear alternative (flat scan of every vector, BM25 over every
chunk). Recall@10 compares the approximate dense top-10 with the exact one, and
the fused top-10 with exact fused scores over every chunk.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragcache.bench.metrics import percentile
from ragcache.router.runs import BlockRun, RunLookup
from ragcache.router.search import DENSE_POOL, build_dense, fuse, is_approximate, postings, read_dense

__all__ = ["DIM", "bench_scale", "parse_sizes", "synthetic_index"]

DIM = 384
VOCAB = 50_000
TOPIC_WORDS = 200
CHUNK_WORDS = 16  # from the topic, and as many from the global tail
CHUNKS_PER_BLOCK = 16
BLOCKS_PER_RUN = 32
FORMAT = 1


def parse_sizes(text: str) -> list[int]:
    """``10k,100k,1m`` → [10000, 100000, 1000000]."""
    scale = {"k": 1_000, "m": 1_000_000}
    sizes = []
    for part in text.lower().split(","):
        part = part.strip()
        try:
            sizes.append(int(float(part[:-1]) * scale[part[-1]]) if part[-1:] in scale else int(part))
        except (ValueError, KeyError, IndexError):
            raise ValueError(f"--synthetic: {part!r} is not a size (e.g. 10k, 100k, 1m)") from None
    return sizes


def _cache_root() -> Path:
    from ragcache.models import cache_home

    return cache_home() / "bench-routing"


def synthetic_index(n: int, root: Path | None = None) -> Path:
    """Generate (once) the synthetic corpus of ``n`` chunks and its index; returns its folder."""
    folder = (root or _cache_root()) / f"n{n}-d{DIM}-f{FORMAT}"
    if (folder / "done").exists():
        return folder
    import bm25s
    from bm25s.tokenization import Tokenized

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(n)
    topics = max(16, n // 500)
    centres = rng.standard_normal((topics, DIM), dtype=np.float32)
    topic_of = np.sort(rng.integers(0, topics, n))  # topic-sorted, as topic blocks lay chunks out
    vectors = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, 100_000):
        part = centres[topic_of[start : start + 100_000]] + rng.standard_normal(
            (min(100_000, n - start), DIM), dtype=np.float32
        )
        vectors[start : start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    vectors.flush()
    topic_words = rng.integers(0, VOCAB, (topics, TOPIC_WORDS))
    ranks = np.arange(100, VOCAB + 100, dtype=np.float64)  # the head (stop words) left out, as tokenize() does
    tail = rng.choice(VOCAB, size=(n, CHUNK_WORDS), p=(1 / ranks) / (1 / ranks).sum())
    own = topic_words[topic_of[:, None], rng.integers(0, TOPIC_WORDS, (n, CHUNK_WORDS))]
    words = np.concatenate([own, tail], axis=1)
    bm25 = bm25s.BM25()
    bm25.index(Tokenized(ids=words.tolist(), vocab={f"w{i}": i for i in range(VOCAB)}), show_progress=False)
    bm25.save(str(tmp / "bm25"), show_progress=False)
    import faiss

    faiss.write_index(build_dense(np.asarray(vectors)), str(tmp / "dense.faiss"))
    picks = np.sort(rng.choice(n, size=min(n, 1000), replace=False))
    queries = vectors[picks] + 0.04 * rng.standard_normal((len(picks), DIM), dtype=np.float32)
    terms = words[picks][:, [0, 1, 2, CHUNK_WORDS]]  # three topic words and one from the tail
    np.savez(tmp / "questions.npz", vectors=queries / np.linalg.norm(queries, axis=1, keepdims=True), terms=terms)
    (tmp / "done").write_text("1\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    return folder


def _runs(n: int) -> list[BlockRun]:
    blocks = -(-n // CHUNKS_PER_BLOCK)
    runs = []
    for i, start in enumerate(range(0, blocks, BLOCKS_PER_RUN)):
        end = min(blocks, start + BLOCKS_PER_RUN)
        head = tuple(range(min(start, BLOCKS_PER_RUN - (end - start)))) if end - start < BLOCKS_PER_RUN else ()
        positions = head + tuple(range(start, end))
        runs.append(BlockRun(i, start, end, positions, tuple(f"b{p}" for p in positions), 0))
    return runs


def bench_scale(n: int, questions: int = 200, k: int = 10, root: Path | None = None) -> dict[str, Any]:
    """Open the synthetic index of ``n`` chunks (generating it first if needed) and time routing on it."""
    import bm25s

    t0 = time.perf_counter()
    folder = synthetic_index(n, root)
    generated_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dense = read_dense(str(folder / "dense.faiss"))
    bm25 = bm25s.BM25.load(str(folder / "bm25"), mmap=True, show_progress=False, verbosity=0)
    lookup = RunLookup.of(_runs(n))
    open_s = time.perf_counter() - t0
    data = np.load(folder / "questions.npz")
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    qv, qt = data["vectors"][:questions], [[f"w{t}" for t in row] for row in data["terms"][:questions]]
    route, exact_s, dense_recall, fused_recall = [], [], [], []
    for vector, terms in zip(qv, qt, strict=True):
        t1 = time.perf_counter()
        sims, ids = dense.search(vector[None, :], DENSE_POOL)
        rows, lexical = postings(bm25, terms)
        found = fuse(ids[0][ids[0] >= 0], sims[0][ids[0] >= 0], rows, lexical, 0.5, 32)
        lookup.coverage(found.rows // CHUNKS_PER_BLOCK, found.fused)
        route.append(time.perf_counter() - t1)
        t2 = time.perf_counter()
        all_sims = np.asarray(vectors @ vector, dtype=np.float32)  # the exact scan, every chunk
        all_lex = np.asarray(bm25.get_scores(terms), dtype=np.float32)
        exact_s.append(time.perf_counter() - t2)
        exact_dense = np.argpartition(-all_sims, k)[:k]
        dense_recall.append(len(set(ids[0][:k].tolist()) & set(exact_dense.tolist())) / k)
        low, high = float(all_sims.min()), float(all_sims.max())
        fused_all = 0.5 * (all_sims - low) / (high - low) + 0.5 * all_lex / (float(all_lex.max()) or 1.0)
        exact_fused = np.argpartition(-fused_all, k)[:k]
        fused_recall.append(len(set(found.rows[:k].tolist()) & set(exact_fused.tolist())) / k)
    ms = lambda xs, q: round(percentile([x * 1000 for x in xs], q), 2)  # noqa: E731
    return {
        "chunks": n,
        "dense": "ivf" if is_approximate(dense) else "flat",
        "nprobe": int(getattr(dense, "nprobe", 0)),
        "nlist": int(getattr(dense, "nlist", 0)),
        "runs": len(lookup.starts),
        "questions": len(qv),
        "generated_s": round(generated_s, 1),
        "open_s": round(open_s, 3),
        "route_p50_ms": ms(route, 50),
        "route_p95_ms": ms(route, 95),
        "exact_p50_ms": ms(exact_s, 50),
        "dense_recall_at_10": round(float(np.mean(dense_recall)), 3),
        "fused_recall_at_10": round(float(np.mean(fused_recall)), 3),
        "load_average": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
    }


def print_scale(results: list[dict[str, Any]], as_json: bool) -> None:
    """The table (or JSON) of :func:`bench_scale` results."""
    if as_json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return
    header = f"{'chunks':>9} {'index':>14} {'open s':>7} {'route p50':>10} {'p95 ms':>7} {'exact p50':>10}"
    print(header + f" {'dense R@10':>11} {'fused R@10':>11} {'load':>5}")
    for r in results:
        kind = f"{r['dense']}" + (f" {r['nprobe']}/{r['nlist']}" if r["dense"] == "ivf" else "")
        print(
            f"{r['chunks']:>9,} {kind:>14} {r['open_s']:>7.3f} {r['route_p50_ms']:>10.2f} {r['route_p95_ms']:>7.2f}"
            f" {r['exact_p50_ms']:>10.2f} {r['dense_recall_at_10']:>11.3f} {r['fused_recall_at_10']:>11.3f}"
            f" {r['load_average']:>5.1f}"
        )
