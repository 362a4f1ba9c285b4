"""The search structures under the chunk index: dense (faiss, exact or IVF) and BM25 postings.

Why two dense kinds (docs/architecture.md, "Routing that stays fast"): an exact
inner-product scan is the best answer while it is cheap, but it is linear in
chunks. From ``APPROX_MIN_CHUNKS`` chunks on, the dense index is an inverted-file
index (``IndexIVFFlat``: ``nlist`` k-means cells, ``nprobe`` of them scanned per
question), whose cost grows with about √chunks. Both are written with faiss and
opened by memory-mapping (``IO_FLAG_MMAP``), so opening costs no read of the
vectors; the OS pages in what a search touches.

A question is one vector: faiss's OpenMP threads only spin against each other on
it (and against every other process on a busy machine), so opening an index for
search sets faiss to one thread; building sets it back to every core.

BM25 stays bm25s's eager index (a CSC matrix of per-term scores, opened with
``mmap=True``); :func:`postings` reads only the query's terms' columns, so
scoring a question touches its postings and nothing else.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "APPROX_MIN_CHUNKS",
    "DENSE_POOL",
    "Candidates",
    "build_dense",
    "fuse",
    "is_approximate",
    "nlist_for",
    "nprobe_for",
    "postings",
    "read_dense",
]

APPROX_MIN_CHUNKS = 50_000  # below this an exact scan is a few ms on two cores (docs/bench/routing.md)
DENSE_POOL = 256  # dense candidates per question on the approximate path
_TRAIN_PER_CELL = 40  # k-means training points per cell (faiss warns below 39)
_SEED = 1234  # k-means seed: the same chunks give the same cells


@dataclass(frozen=True)
class Candidates:
    """A question's best chunks (row numbers) with fused scores in [0, 1], best first (ties: earlier row)."""

    rows: NDArray[np.int64]
    fused: NDArray[np.float64]


def nlist_for(n: int) -> int:
    """Cells of the IVF index for ``n`` chunks: about 2·√n (so a cell holds about √n / 2 chunks)."""
    return max(1, min(n, max(16, int(2 * math.sqrt(n)))))


def nprobe_for(nlist: int) -> int:
    """Cells scanned per question: 1/32 of them, at least 16 (recall@10 ≥ 0.9 on the bench's clustered data)."""
    return min(nlist, max(16, nlist // 32))


def is_approximate(index: Any) -> bool:
    """Whether a faiss index is the IVF kind (search returns a pool, not every chunk)."""
    import faiss

    return isinstance(index, faiss.IndexIVF)


def build_dense(vectors: NDArray[np.float32], approximate: bool | None = None) -> Any:
    """An inner-product faiss index over unit ``vectors``: exact below ``APPROX_MIN_CHUNKS`` (or when
    ``approximate`` is False), else IVF with a direct map (its vectors can be read back for reuse)."""
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    n, dim = vectors.shape if vectors.ndim == 2 else (0, 0)
    if approximate is None:
        approximate = n >= APPROX_MIN_CHUNKS
    if not approximate:
        index = faiss.IndexFlatIP(dim)
        if n:
            index.add(vectors)
        return index
    nlist = nlist_for(n)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = _SEED
    sample = np.random.default_rng(_SEED).choice(n, size=min(n, nlist * _TRAIN_PER_CELL), replace=False)
    index.train(vectors[np.sort(sample)])
    index.set_direct_map_type(faiss.DirectMap.Array)
    index.add(vectors)
    index.nprobe = nprobe_for(nlist)
    return index


def read_dense(path: str) -> Any:
    """Open a saved dense index by memory-mapping it (read-only), for one-question searches (one thread)."""
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = nprobe_for(index.nlist)
    return index


def postings(bm25: Any, terms: list[str]) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """BM25 of the chunks that hold any of ``terms`` (rows ascending, scores summed per row), read from
    the query's postings only. A repeated term counts again, as in bm25s's own scoring."""
    ids = [bm25.vocab_dict[t] for t in terms if t in bm25.vocab_dict]
    if not ids:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    indptr, indices, data = bm25.scores["indptr"], bm25.scores["indices"], bm25.scores["data"]
    rows = np.concatenate([indices[indptr[t] : indptr[t + 1]] for t in ids]).astype(np.int64)
    values = np.concatenate([data[indptr[t] : indptr[t + 1]] for t in ids]).astype(np.float32)
    unique, inverse = np.unique(rows, return_inverse=True)
    summed = np.zeros(len(unique), dtype=np.float32)
    np.add.at(summed, inverse, values)
    return unique, summed


def fuse(
    dense_rows: NDArray[np.int64],
    dense_sims: NDArray[np.float32],
    lexical_rows: NDArray[np.int64],
    lexical: NDArray[np.float32],
    dense_weight: float,
    k: int,
) -> Candidates:
    """The ``k`` best of the union of both candidate sets by ``dense_weight`` × min-max cosine (over the
    dense pool) + (1 − ``dense_weight``) × BM25 / best BM25; a chunk outside a pool scores 0 on that side."""
    rows = np.union1d(dense_rows, lexical_rows)
    dense = np.zeros(len(rows), dtype=np.float64)
    if len(dense_rows):
        sims = dense_sims.astype(np.float64)
        low, high = float(sims.min()), float(sims.max())
        dense[np.searchsorted(rows, dense_rows)] = (sims - low) / (high - low) if high > low else 0.0
    lex = np.zeros(len(rows), dtype=np.float64)
    if len(lexical_rows) and float(lexical.max()) > 0:
        lex[np.searchsorted(rows, lexical_rows)] = lexical.astype(np.float64) / float(lexical.max())
    fused = np.round(dense_weight * dense + (1.0 - dense_weight) * lex, 6)
    if len(rows) > k:
        keep = np.argpartition(-fused, k - 1)[:k]
        cut = fused[keep].min()
        keep = np.flatnonzero(fused >= cut)  # every tie at the cut, so ties still go to the earlier row
        rows, fused = rows[keep], fused[keep]
    order = np.lexsort((rows, -fused))[:k]
    return Candidates(rows[order], fused[order])
