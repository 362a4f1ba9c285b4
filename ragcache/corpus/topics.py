"""Topic leaves: cut a large category into coherent groups of documents, deterministically.

A category larger than ``build.max_block_tokens`` is split by recursive balanced
bisection: spherical 2-means over lexical TF-IDF document vectors (farthest-point
seeds, ties to the earlier document, a fixed number of iterations), with the cut
clamped so each side holds 30–70% of the token mass, until every leaf fits the
limit. Leaves come out in depth-first order with the child holding the earlier
document first, so related topics sit next to each other in the canonical block
order and the order still follows the paths where topics do not decide it.

Why lexical and integer arithmetic: the build must be byte-identical on any
machine (docs/architecture.md, invariant 1). Neural embeddings and BLAS reductions change in
the last bits with the CPU and the thread count, and one flipped document
reshuffles a subtree. Here term weights are computed with Python's ``math`` on
sorted terms, quantized to integers, and every dot product and centroid is an
exact integer sum, so the only floating-point steps are single, correctly rounded
operations on identical inputs.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BALANCE", "ITERATIONS", "DocVectors", "doc_vectors", "topic_leaves"]

ITERATIONS = 8  # 2-means rounds per split (it usually settles in 3–4)
BALANCE = (3, 7)  # each side of a split holds between 3/10 and 7/10 of the tokens
_SCALE = 1 << 16  # unit vectors are stored as integers with this many steps
_WORD = re.compile(r"[a-z][a-z0-9_]+")
_STOPWORDS = frozenset(
    [
        "about",
        "also",
        "and",
        "are",
        "any",
        "but",
        "can",
        "could",
        "did",
        "does",
        "each",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "into",
        "its",
        "may",
        "more",
        "most",
        "not",
        "one",
        "only",
        "other",
        "our",
        "out",
        "over",
        "same",
        "should",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "use",
        "used",
        "uses",
        "using",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


@dataclass(frozen=True)
class DocVectors:
    """Unit TF-IDF vectors as a CSR matrix of integers (one row per document)."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    dim: int

    @property
    def rows(self) -> int:
        return len(self.indptr) - 1

    def dots(self, centroid: np.ndarray) -> np.ndarray:
        """Every row's exact integer dot product with ``centroid`` (wrap-around cumsum is exact per row)."""
        products = self.values * centroid[self.indices]
        sums = np.concatenate(([0], np.cumsum(products, dtype=np.int64)))
        return sums[self.indptr[1:]] - sums[self.indptr[:-1]]

    def centroid(self, members: np.ndarray) -> np.ndarray:
        """The integer sum of the rows flagged in ``members`` (a boolean mask)."""
        row_of = np.repeat(np.arange(self.rows), np.diff(self.indptr))
        mask = members[row_of]
        # float64 sums of integers below 2**53 are exact in any order
        summed = np.bincount(self.indices[mask], weights=self.values[mask], minlength=self.dim)
        return summed.astype(np.int64)


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def doc_vectors(texts: Sequence[str]) -> DocVectors:
    """Sublinear TF × smoothed IDF over terms in at least two documents, L2-normalised, as integers."""
    counts = [Counter(_terms(t)) for t in texts]
    n = len(texts)
    df = Counter(term for c in counts for term in c)
    min_df = 2 if n > 2 else 1
    vocab = {term: i for i, term in enumerate(sorted(t for t, d in df.items() if d >= min_df))}
    idf = {t: math.log((1 + n) / (1 + df[t])) + 1.0 for t in vocab}
    indptr, indices, values = [0], [], []
    for c in counts:
        terms = sorted(t for t in c if t in vocab)
        weights = [(1.0 + math.log(c[t])) * idf[t] for t in terms]
        norm = math.sqrt(math.fsum(w * w for w in weights)) or 1.0
        for term, weight in zip(terms, weights, strict=True):
            q = round(weight / norm * _SCALE)
            if q:
                indices.append(vocab[term])
                values.append(q)
        indptr.append(len(indices))
    as_int = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return DocVectors(as_int(indptr), as_int(indices), as_int(values), len(vocab))


def topic_leaves(texts: Sequence[str], costs: Sequence[int], limit: int) -> list[list[int]]:
    """Indices of ``texts`` grouped into leaves of at most ``limit`` cost (a lone document may exceed it).

    Leaves are in depth-first order; inside a leaf, indices ascend.
    """
    vectors = doc_vectors(texts)
    weights = np.asarray(costs, dtype=np.int64)
    leaves: list[list[int]] = []
    stack = [np.arange(len(texts))]
    while stack:
        items = stack.pop()
        if len(items) <= 1 or int(weights[items].sum()) <= limit:
            leaves.append([int(i) for i in items])
            continue
        first, second = sorted(_bisect(vectors, weights, items), key=lambda side: int(side[0]))
        stack += [second, first]  # first is popped next: depth-first, earlier documents first
    return leaves


def _bisect(vectors: DocVectors, weights: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split ``items`` (ascending) in two by balanced spherical 2-means."""
    inside = np.zeros(vectors.rows, dtype=bool)
    inside[items] = True
    to_mean = vectors.dots(vectors.centroid(inside))[items]
    seed_a = int(items[int(np.argmin(to_mean))])  # the least typical document
    only_a = np.zeros(vectors.rows, dtype=bool)
    only_a[seed_a] = True
    to_a = vectors.dots(vectors.centroid(only_a))[items]
    to_a[items == seed_a] = np.iinfo(np.int64).max
    seed_b = int(items[int(np.argmin(to_a))])  # the document least like it
    centroids = [vectors.centroid(only_a), vectors.centroid(_mask(vectors.rows, [seed_b]))]
    side: np.ndarray | None = None
    for _ in range(ITERATIONS):
        sims = [vectors.dots(c)[items] / _norm(c) for c in centroids]
        preference = sims[0] - sims[1]
        order = np.lexsort((items, -preference))  # most like the first centroid first; ties: earlier document
        cut = _balanced_cut(weights[items[order]], int((preference > 0).sum()))
        chosen = np.sort(items[order[:cut]])
        if side is not None and np.array_equal(chosen, side):
            break
        side = chosen
        centroids = [vectors.centroid(_mask(vectors.rows, side)), vectors.centroid(_mask(vectors.rows, items, side))]
    assert side is not None
    return side, np.setdiff1d(items, side)


def _balanced_cut(masses: np.ndarray, natural: int) -> int:
    """How many of the ordered items go to the first side: nearest to ``natural`` within the balance window."""
    total = int(masses.sum())
    prefix = np.cumsum(masses)[:-1]  # mass of the first k items, k = 1 … n-1
    ks = np.arange(1, len(masses))
    low, high = BALANCE
    feasible = (10 * prefix >= low * total) & (10 * prefix <= high * total)
    if feasible.any():
        candidates = ks[feasible]
        return int(candidates[np.argmin(np.abs(candidates - natural))])
    return int(ks[np.argmin(np.abs(2 * prefix - total))])


def _mask(rows: int, members: np.ndarray | list[int], without: np.ndarray | None = None) -> np.ndarray:
    mask = np.zeros(rows, dtype=bool)
    mask[members] = True
    if without is not None:
        mask[without] = False
    return mask


def _norm(centroid: np.ndarray) -> float:
    """Euclidean norm by an exactly rounded sum (no BLAS), so it is the same on every machine."""
    return math.sqrt(math.fsum((centroid.astype(np.float64) ** 2).tolist())) or 1.0
