"""The router's chunk index: dense (faiss) and lexical (BM25) scores, fused.

Built at ``ragcache build`` time as a build step and stored in ``<build>/index/``::

    index.json     format, key, embedding model id, chunk count, dimension, dense kind
    dense.faiss    inner-product index over L2-normalised chunk embeddings: exact (flat)
                   below ``search.APPROX_MIN_CHUNKS`` chunks, IVF above (search.py)
    rows.json      the content hash of each row's embedded text, in row order
    bm25/          bm25s index over the same chunk texts

Both are opened by memory-mapping. On the IVF kind a question scores a pool of
dense candidates and its BM25 postings only (:meth:`ChunkIndex.top`); chunks
outside the pool score 0 on the dense side.

The *key* is a hash of the embedding model id and every chunk's hash (and the
title it is embedded with), so an unchanged corpus reuses its index: it is copied
from the previous build, or from a content-addressed cache under
``~/.cache/ragcache/index/<key>`` shared by every build of the same chunks.
When the corpus changed and the embedder's vectors are a pure function of each
text (``per_text``: the onnx-int8 backend), the previous build's vectors are kept
for every unchanged text and only new texts are embedded: a one-document edit
re-embeds that document's chunks, not the corpus. The result is byte-identical to
a fresh build.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragcache.errors import ConfigError, CorpusError
from ragcache.hashing import canonical_json, content_hash
from ragcache.router.embeddings import DEFAULT_EMBEDDING_MODEL, Embedder, embedder_model_id, load_embedder
from ragcache.router.search import DENSE_POOL, Candidates, build_dense, fuse, is_approximate, postings, read_dense

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ragcache.corpus.manifest import ChunkRecord, CompiledCorpus

__all__ = [
    "EMBED_STAGE",
    "INDEX_DIR",
    "INDEX_FORMAT",
    "ChunkIndex",
    "QueryScores",
    "embed_texts",
    "embed_workers",
    "index_key",
    "index_step",
    "open_index",
]

INDEX_DIR = "index"
EMBED_STAGE = "embedding chunks"  # the progress stage name, for callers that time it
INDEX_FORMAT = 1
ROWS_FILE = "rows.json"
WORKERS_ENV = "RAGCACHE_EMBED_WORKERS"
_EMBED_BATCH = 128
ProgressFn = Callable[[str, int, int], None]  # (stage, done, total), as build_corpus reports
log = logging.getLogger(__name__)
_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(
    {
        "a",
        "about",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    }
)


def tokenize(text: str) -> list[str]:
    """Lower-cased words, identifiers kept whole *and* split on ``_`` (``sqlite3_open_v2`` → + open, v2)."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS:
            continue
        out.append(word)
        if "_" in word:
            out.extend(part for part in word.split("_") if len(part) > 1 and part not in _STOPWORDS)
    return out


def chunk_text(corpus: CompiledCorpus, chunk: ChunkRecord) -> str:
    """What is embedded and BM25-indexed for a chunk: its document's title, then its text."""
    doc = corpus.documents.get(chunk.doc_id)
    title = doc.title if doc is not None else chunk.doc_id
    return f"{title}\n{chunk.text}"


def index_key(corpus: CompiledCorpus, model_id: str) -> str:
    """Hash of what the index depends on: format, model, chunk hashes and titles, in order."""
    entries = [[c.id, c.sha256, content_hash(chunk_text(corpus, c))] for c in corpus.chunks]
    return content_hash(canonical_json({"format": INDEX_FORMAT, "model": model_id, "chunks": entries}))


@dataclass(frozen=True)
class QueryScores:
    """Per-chunk scores for one question, in chunk (corpus) order; ``fused`` is in [0, 1]."""

    dense: NDArray[np.float32]
    lexical: NDArray[np.float32]
    fused: NDArray[np.float64]


class ChunkIndex:
    """Dense + BM25 scores over a compiled corpus's chunks, fused with ``dense_weight``."""

    def __init__(self, corpus: CompiledCorpus, embedder: Embedder, dense: Any, bm25: Any, key: str) -> None:
        self.corpus = corpus
        self.embedder = embedder
        self.key = key
        self.chunk_ids = [c.id for c in corpus.chunks]
        self._dense = dense
        self._bm25 = bm25
        self.row_hashes: list[str] | None = None  # known when built here; saved as rows.json

    @classmethod
    def build(
        cls,
        corpus: CompiledCorpus,
        embedder: Embedder,
        progress: ProgressFn | None = None,
        known: dict[str, NDArray[np.float32]] | None = None,
        approximate: bool | None = None,
    ) -> ChunkIndex:
        """Embed and index every chunk (the slow part of a build; docs/bench/build.md has the rates).

        ``known`` maps text hashes to vectors this embedder made before: those texts are not embedded again.
        ``approximate``: force the dense kind (default: by chunk count, search.py).
        """
        import bm25s

        texts = [chunk_text(corpus, c) for c in corpus.chunks]
        hashes = [content_hash(t) for t in texts]
        known = known or {}
        fresh = [i for i, h in enumerate(hashes) if h not in known]
        embedded = embed_texts(embedder, [texts[i] for i in fresh], progress)
        if len(embedded):
            dim = embedded.shape[1]
        else:  # nothing new: the kept vectors give the width, no model session needed for it
            dim = len(next(iter(known.values()))) if known else len(embedder.embed_query("x"))
        vectors = np.zeros((len(texts), dim), dtype=np.float32)
        if fresh:
            vectors[fresh] = embedded
        for i, h in enumerate(hashes):
            if h in known:
                vectors[i] = known[h]
        dense = build_dense(vectors, approximate)
        bm25 = bm25s.BM25()
        bm25.index([tokenize(t) or [""] for t in texts], show_progress=False)
        index = cls(corpus, embedder, dense, bm25, index_key(corpus, embedder.model_id))
        index.row_hashes = hashes
        return index

    @classmethod
    def load(cls, corpus: CompiledCorpus, embedder: Embedder, root: Path | None = None) -> ChunkIndex:
        """Open ``<build>/index`` by memory-mapping; a missing or stale index is a :class:`CorpusError`."""
        import bm25s

        root = root or corpus.root / INDEX_DIR
        meta = read_meta(root)
        expected = index_key(corpus, embedder.model_id)
        if meta is None:
            raise CorpusError(f"{root}: no router index; run `ragcache build` (without --no-index)")
        if meta.get("key") != expected:
            raise CorpusError(
                f"{root}: router index was built for other chunks or another embedding model "
                f"({meta.get('model_id')!r}, want {embedder.model_id!r}); run `ragcache build` again"
            )
        dense = read_dense(str(root / "dense.faiss"))
        bm25 = bm25s.BM25.load(str(root / "bm25"), mmap=True, show_progress=False, verbosity=0)
        return cls(corpus, embedder, dense, bm25, expected)

    def save(self, root: Path) -> None:
        """Write the index files into ``root`` (created)."""
        import faiss

        root.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._dense, str(root / "dense.faiss"))
        self._bm25.save(str(root / "bm25"), show_progress=False)
        meta = {
            "format": INDEX_FORMAT,
            "key": self.key,
            "model_id": self.embedder.model_id,
            "chunks": len(self.chunk_ids),
            "dim": int(self._dense.d),
            "dense": "ivf" if self.approximate else "flat",
        }
        (root / "index.json").write_text(canonical_json(meta, indent=2) + "\n", encoding="utf-8")
        if self.row_hashes is not None:
            (root / ROWS_FILE).write_text(canonical_json(self.row_hashes) + "\n", encoding="utf-8")

    @property
    def approximate(self) -> bool:
        """Whether the dense side is the IVF kind (search.py)."""
        return is_approximate(self._dense)

    def scores(self, question: str, dense_weight: float = 0.5) -> QueryScores:
        """Dense cosine and BM25 for every chunk, min-max normalised per question and mixed.

        On the IVF kind only a pool of ``DENSE_POOL`` chunks has a cosine (the rest 0) and the
        min-max runs over that pool: linear in chunks only through the arrays it returns.
        """
        n = len(self.chunk_ids)
        dense = np.zeros(n, dtype=np.float32)
        pool = np.zeros(n, dtype=bool)
        if n:
            k = min(n, DENSE_POOL) if self.approximate else n
            sims, ids = self._dense.search(self.embedder.embed_query(question)[None, :], k)
            found = ids[0] >= 0
            dense[ids[0][found]] = sims[0][found]
            pool[ids[0][found]] = True
        terms = tokenize(question)  # may be empty ("why?", only stop words): bm25s cannot score no terms
        lexical = np.asarray(self._bm25.get_scores(terms), dtype=np.float32) if n and terms else np.zeros_like(dense)
        normalised = _minmax(dense) if not self.approximate else np.where(pool, _minmax_of(dense, pool), 0.0)
        fused = dense_weight * normalised + (1.0 - dense_weight) * _scale(lexical)
        return QueryScores(dense, lexical, np.round(fused, 6))  # rounding: stable ties across machines

    def top(self, question: str, k: int, dense_weight: float = 0.5) -> list[tuple[str, float]]:
        """The ``k`` best chunks by fused score, touching only a dense pool and the question's BM25
        postings on the IVF kind (sublinear in chunks); on the exact kind, the same as :meth:`search`."""
        if not self.approximate:
            return self.search(question, k, dense_weight)
        found = self.candidates(self.embedder.embed_query(question), tokenize(question), k, dense_weight)
        return [(self.chunk_ids[int(i)], float(f)) for i, f in zip(found.rows, found.fused, strict=True)]

    def candidates(
        self, vector: NDArray[np.float32], terms: list[str], k: int, dense_weight: float = 0.5
    ) -> Candidates:
        """The fused best ``k`` rows from a pool of dense neighbours of ``vector`` and the postings of ``terms``."""
        pool = min(len(self.chunk_ids), max(k, DENSE_POOL))
        sims, ids = self._dense.search(vector[None, :], pool) if pool else (np.zeros((1, 0)), np.zeros((1, 0)))
        found = ids[0] >= 0
        rows, lexical = postings(self._bm25, terms)
        return fuse(ids[0][found].astype(np.int64), sims[0][found], rows, lexical, dense_weight, k)

    def dense_search(self, question: str, k: int) -> list[tuple[str, float]]:
        """Top ``k`` chunk ids by cosine similarity alone (what plain vector RAG does)."""
        return self._top(self.scores(question).dense, k)

    def search(self, question: str, k: int, dense_weight: float = 0.5) -> list[tuple[str, float]]:
        """Top ``k`` chunk ids by fused score."""
        return self._top(self.scores(question, dense_weight).fused, k)

    def _top(self, values: Any, k: int) -> list[tuple[str, float]]:
        order = np.lexsort((np.arange(len(values)), -np.asarray(values, dtype=np.float64)))[:k]
        return [(self.chunk_ids[i], float(values[i])) for i in order]


def embed_workers() -> int:
    """CPU processes that share a per-text embedder's work: ``RAGCACHE_EMBED_WORKERS``, default every core."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if not raw:
        return os.cpu_count() or 1
    try:
        workers = int(raw)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ConfigError(f"{WORKERS_ENV}={raw!r}: expected a whole number of processes, at least 1")
    return workers


def embed_texts(
    embedder: Embedder, texts: list[str], progress: ProgressFn | None = None, workers: int | None = None
) -> NDArray[np.float32]:
    """Vectors in input order, embedded longest first so each batch pads little (order is deterministic).

    A per-text embedder with ``worker_args`` (onnx-int8) on CPU is shared by ``workers`` processes
    (default :func:`embed_workers`) with one thread each, when there are enough texts to pay for
    starting them; its vectors are the same whichever process makes them.
    """
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    batches = [order[start : start + _EMBED_BATCH] for start in range(0, len(order), _EMBED_BATCH)]
    vectors: NDArray[np.float32] | None = None
    if progress:  # the stage's start, so its rate (chunks/s) counts embedding only
        progress(EMBED_STAGE, 0, len(texts))
    done = 0
    for batch, part in zip(batches, _embed_batches(embedder, texts, batches, workers), strict=True):
        if vectors is None:
            vectors = np.zeros((len(texts), part.shape[1]), dtype=np.float32)
        vectors[batch] = part
        done += len(batch)
        if progress:
            progress(EMBED_STAGE, done, len(texts))
    return vectors if vectors is not None else np.zeros((0, 0), dtype=np.float32)


def _embed_batches(
    embedder: Embedder, texts: list[str], batches: list[list[int]], workers: int | None
) -> Iterator[NDArray[np.float32]]:
    """Each batch's vectors, in order: here, or from a pool of worker processes."""
    workers = embed_workers() if workers is None else workers
    spawn_args = getattr(embedder, "worker_args", None)
    if workers <= 1 or spawn_args is None or len(batches) < 4 * workers:
        for batch in batches:
            yield embedder.embed([texts[i] for i in batch])
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # no fork of a process holding sessions and threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=spawn_args) as pool:
        yield from pool.map(_worker_embed, [[texts[i] for i in batch] for batch in batches])


_WORKER_EMBEDDER: Any = None


def _worker_init(folder: str, model_id: str) -> None:
    """A worker process's own one-thread embedder (the processes are the parallelism)."""
    global _WORKER_EMBEDDER
    from ragcache.router.onnx_embed import OnnxEmbedder

    _WORKER_EMBEDDER = OnnxEmbedder(Path(folder), model_id, threads=1)


def _worker_embed(texts: list[str]) -> NDArray[np.float32]:
    return _WORKER_EMBEDDER.embed(texts)


def _minmax_of(values: NDArray[np.float32], pool: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Min-max over the ``pool`` entries only."""
    values = values.astype(np.float64)
    if not pool.any():
        return np.zeros_like(values)
    low, high = float(values[pool].min()), float(values[pool].max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _minmax(values: NDArray[np.float32]) -> NDArray[np.float64]:
    values = values.astype(np.float64)
    if not len(values):
        return values
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _scale(values: NDArray[np.float32]) -> NDArray[np.float64]:
    values = values.astype(np.float64)
    high = float(values.max()) if len(values) else 0.0
    return values / high if high > 0 else np.zeros_like(values)


def read_meta(root: Path) -> dict[str, Any] | None:
    """``index.json`` of an index folder, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads((root / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == INDEX_FORMAT else None


def cache_dir() -> Path:
    """Content-addressed index cache shared by builds of the same chunks."""
    from ragcache.models import cache_home

    return cache_home() / "index"


def index_step(
    embedding_model: str | Any = DEFAULT_EMBEDDING_MODEL,
    *,
    cache: Path | None = None,
    progress: ProgressFn | None = None,
) -> Callable[[Path, CompiledCorpus, Path | None], None]:
    """A ``build_corpus`` step writing ``<tmp build>/index``, reusing an index with the same key."""

    def step(build_dir: Path, corpus: CompiledCorpus, previous: Path | None) -> None:
        key = index_key(corpus, embedder_model_id(embedding_model))  # no model load when reused
        target = build_dir / INDEX_DIR
        shared = (cache if cache is not None else cache_dir()) / key
        for candidate in ([previous / INDEX_DIR] if previous is not None else []) + [shared]:
            meta = read_meta(candidate)
            if meta is not None and meta.get("key") == key:
                shutil.copytree(candidate, target)
                log.info("router index reused from %s", candidate)
                return
        if progress:
            progress("loading the embedding model", 0, 0)
        embedder = load_embedder(embedding_model)
        known = known_vectors(previous / INDEX_DIR, embedder) if previous is not None else {}
        if known:
            log.info("router index: %d vectors of the previous build kept for unchanged texts", len(known))
        index = ChunkIndex.build(corpus, embedder, progress, known)
        index.save(target)
        _store_shared(target, shared)

    return step


def known_vectors(root: Path, embedder: Embedder) -> dict[str, NDArray[np.float32]]:
    """Text hash → vector from an earlier index made by ``embedder``, when its vectors are per text.

    Empty when the embedder's vectors depend on their batch (torch), the model differs, or
    the folder is missing, old (no rows.json) or unreadable: then everything is embedded.
    """
    meta = read_meta(root)
    if not getattr(embedder, "per_text", False) or meta is None or meta.get("model_id") != embedder.model_id:
        return {}
    try:
        hashes = json.loads((root / ROWS_FILE).read_text(encoding="utf-8"))
        dense = read_dense(str(root / "dense.faiss"))
    except (OSError, ValueError, RuntimeError):
        return {}
    if not isinstance(hashes, list) or len(hashes) != dense.ntotal:
        return {}
    vectors = dense.reconstruct_n(0, dense.ntotal) if dense.ntotal else np.zeros((0, dense.d), dtype=np.float32)
    return {str(h): vectors[i] for i, h in enumerate(hashes)}


def _store_shared(source: Path, shared: Path) -> None:
    """Copy a fresh index into the shared cache (atomically; a failure only costs the next build time)."""
    try:
        shared.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{shared.name[:12]}-", dir=shared.parent))
        shutil.copytree(source, tmp / "index")
        (tmp / "index").replace(shared)
        shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        log.warning("could not store the router index in %s: %s", shared, exc)


def open_index(corpus: CompiledCorpus, embedder: Embedder) -> ChunkIndex:
    """The build's index when it matches, else one built in memory now (logged: it is slow)."""
    root = corpus.root / INDEX_DIR
    meta = read_meta(root)
    if meta is not None and meta.get("key") == index_key(corpus, embedder.model_id):
        return ChunkIndex.load(corpus, embedder, root)
    shared = cache_dir() / index_key(corpus, embedder.model_id)
    if read_meta(shared) is not None:
        return ChunkIndex.load(corpus, embedder, shared)
    log.warning("%s: no matching router index; embedding %d chunks now", root, len(corpus.chunks))
    return ChunkIndex.build(corpus, embedder)
