"""The router index: built at build time, reused when the corpus is unchanged, rebuilt when chunks change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from router_corpus import TOPICS, build_topics, make_topic_corpus

from ragcache.corpus.store import load_corpus
from ragcache.errors import CorpusError
from ragcache.router.embeddings import DEFAULT_EMBEDDING_MODEL, load_embedder
from ragcache.router.index import INDEX_DIR, ChunkIndex, index_key, open_index, tokenize


def meta(build: Path) -> dict:
    return json.loads((build / INDEX_DIR / "index.json").read_text())


def forbid_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: object) -> None:
        raise AssertionError("the index was re-embedded although its key was unchanged")

    monkeypatch.setattr(ChunkIndex, "build", classmethod(lambda cls, *a: fail(*a)))


def test_index_is_built_with_the_corpus_and_searchable(tmp_path: Path) -> None:
    corpus = build_topics(tmp_path).corpus
    info = meta(corpus.root)
    embedder = load_embedder(DEFAULT_EMBEDDING_MODEL)
    assert info["model_id"] == embedder.model_id and info["model_id"].startswith("st:all-MiniLM-L6-v2@")
    assert info["chunks"] == len(corpus.chunks) and info["key"] == index_key(corpus, embedder.model_id)
    assert str(tmp_path) not in (corpus.root / INDEX_DIR / "index.json").read_text()  # no absolute paths
    index = ChunkIndex.load(corpus, embedder)
    top, _ = index.search("three-way handshake SYN ACK", 1)[0]
    assert top.startswith("networking/tcp.md#")
    dense_top, score = index.dense_search("baking a loaf of bread in the oven", 1)[0]
    assert dense_top.startswith("cooking/bread.md#") and 0 < score <= 1
    scores = index.scores("tomato seeds")
    assert scores.fused.shape == (len(corpus.chunks),) and 0 <= scores.fused.min() <= scores.fused.max() <= 1


def test_unchanged_corpus_reuses_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = meta(build_topics(tmp_path).build_dir)
    before = (tmp_path / "build" / INDEX_DIR / "dense.faiss").read_bytes()
    forbid_rebuild(monkeypatch)
    build_topics(tmp_path)  # same out: copied from the previous build
    assert meta(tmp_path / "build") == first
    assert (tmp_path / "build" / INDEX_DIR / "dense.faiss").read_bytes() == before
    other = build_topics(tmp_path, out=tmp_path / "elsewhere")  # fresh out: from the shared index cache
    assert meta(other.build_dir) == first


def test_changed_chunks_rebuild_the_index(tmp_path: Path) -> None:
    first = meta(build_topics(tmp_path).build_dir)
    docs = {topic: dict(files) for topic, files in TOPICS.items()}
    docs["networking"]["quic.md"] = "# QUIC\n\nQUIC multiplexes streams over UDP with built-in TLS 1.3 handshakes.\n"
    make_topic_corpus(tmp_path / "topics", docs=docs)
    corpus = build_topics(tmp_path).corpus
    second = meta(corpus.root)
    assert second["key"] != first["key"] and second["chunks"] == first["chunks"] + 1
    index = ChunkIndex.load(corpus, load_embedder(DEFAULT_EMBEDDING_MODEL))
    assert index.search("QUIC over UDP", 1)[0][0] == "networking/quic.md#0"


def test_stale_index_is_refused_on_load_and_rebuilt_in_memory(tmp_path: Path) -> None:
    result = build_topics(tmp_path)
    (result.build_dir / INDEX_DIR / "index.json").write_text(json.dumps({**meta(result.build_dir), "key": "x"}))
    corpus = load_corpus(result.build_dir)
    embedder = load_embedder(DEFAULT_EMBEDDING_MODEL)
    with pytest.raises(CorpusError, match="run `ragcache build` again"):
        ChunkIndex.load(corpus, embedder)
    index = open_index(corpus, embedder)  # falls back to the shared cache, which matches
    assert index.key == index_key(corpus, embedder.model_id)


def test_tokenize_splits_identifiers_and_drops_stopwords() -> None:
    assert tokenize("What does sqlite3_open_v2 do?") == ["sqlite3_open_v2", "sqlite3", "open", "v2"]
