"""search.py: the IVF dense index (opened by mmap, recall against exact), BM25 postings, sparse fusion."""

from __future__ import annotations

from pathlib import Path

import bm25s
import faiss
import numpy as np
from router_corpus import build_topics

from ragcache.router.embeddings import DEFAULT_EMBEDDING_MODEL, load_embedder
from ragcache.router.index import INDEX_DIR, ChunkIndex, known_vectors, tokenize
from ragcache.router.runs import RunLookup, plan_runs
from ragcache.router.search import build_dense, fuse, is_approximate, postings, read_dense


def clustered(n: int, dim: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(4, n // 100), dim))
    x = centers[rng.integers(0, len(centers), n)] + 0.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ivf_index_opens_by_mmap_and_finds_the_exact_neighbours(tmp_path: Path) -> None:
    x = clustered(6000, 32)
    ivf = build_dense(x, approximate=True)
    assert is_approximate(ivf) and not is_approximate(build_dense(x[:10]))
    faiss.write_index(ivf, str(tmp_path / "d.faiss"))
    opened = read_dense(str(tmp_path / "d.faiss"))
    assert is_approximate(opened) and opened.nprobe == ivf.nprobe
    queries = x[:50] + 0.05 * np.random.default_rng(1).standard_normal((50, 32)).astype(np.float32)
    _, exact = build_dense(x, approximate=False).search(queries, 10)
    _, approx = opened.search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9, recall
    np.testing.assert_array_equal(opened.reconstruct_n(0, 5), x[:5])  # vectors kept for reuse


def test_postings_score_only_the_query_terms_and_match_bm25s() -> None:
    texts = [["socket", "packet"], ["tomato", "soil"], ["packet", "packet", "router"], ["soil"]]
    bm25 = bm25s.BM25()
    bm25.index(texts, show_progress=False)
    rows, scores = postings(bm25, ["packet", "router", "unknown"])
    full = bm25.get_scores(["packet", "router"])
    assert rows.tolist() == [0, 2] and np.allclose(scores, full[[0, 2]]) and full[[1, 3]].tolist() == [0, 0]
    assert postings(bm25, ["nothing"])[0].size == 0


def test_fuse_takes_the_best_of_both_pools_ties_to_the_earlier_row() -> None:
    found = fuse(
        np.array([5, 9, 2]),
        np.array([0.9, 0.5, 0.1], dtype=np.float32),
        np.array([2, 7]),
        np.array([4.0, 4.0], dtype=np.float32),
        0.5,
        3,
    )
    # 5: dense 1.0 → 0.5; 2: dense 0 + lex 1 → 0.5; 7: lex 1 → 0.5; 9: 0.25
    assert found.rows.tolist() == [2, 5, 7] and found.fused.tolist() == [0.5, 0.5, 0.5]


def test_chunk_index_on_the_ivf_kind_routes_and_reopens(tmp_path: Path) -> None:
    corpus = build_topics(tmp_path).corpus
    embedder = load_embedder(DEFAULT_EMBEDDING_MODEL)
    index = ChunkIndex.build(corpus, embedder, approximate=True)
    index.save(tmp_path / "ivf")
    opened = ChunkIndex.load(corpus, embedder, tmp_path / "ivf")
    assert opened.approximate
    top, score = opened.top("three-way handshake SYN ACK", 3)[0]
    assert top.startswith("networking/tcp.md#") and 0 < score <= 1
    exact = ChunkIndex.load(corpus, embedder)
    assert not exact.approximate and exact.top("three-way handshake SYN ACK", 1)[0][0] == top
    fused = opened.scores("tomato seeds").fused
    assert fused.shape == (len(corpus.chunks),) and 0 <= fused.min() <= fused.max() <= 1
    kept = known_vectors(tmp_path / "ivf", embedder)
    assert len(kept) == len(set(index.row_hashes or [])) and tokenize("x y") == ["x", "y"]
    assert (corpus.root / INDEX_DIR / "dense.faiss").exists()


def test_run_lookup_scores_runs_like_the_membership_matrix() -> None:
    rng = np.random.default_rng(3)
    tokens = rng.integers(50, 400, 60).tolist()
    runs = plan_runs([f"b{i}" for i in range(60)], tokens, ["c"] * 60, 1500)
    assert any(run.head for run in runs)  # the last run is topped up with the corpus head
    member = np.zeros((len(runs), 60), dtype=bool)
    for run in runs:
        member[run.index, list(run.positions)] = True
    positions = rng.integers(0, 60, 32)
    weights = rng.random(32)
    expected = member[:, positions].astype(np.float64) @ weights / weights.sum()
    got = RunLookup.of(runs).coverage(positions, weights)
    assert got == {r: round(float(v), 6) for r, v in enumerate(expected) if v > 0}
