"""Embedding backends: the int8 ONNX path stays close to torch, is deterministic, and is named in index keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from router_corpus import TOPICS, build_topics, make_topic_corpus

from ragcache.cli.corpus import _index_line
from ragcache.cli.output import ProgressReporter
from ragcache.corpus.compile import build_corpus
from ragcache.corpus.store import load_corpus
from ragcache.errors import ConfigError
from ragcache.router.embeddings import embedder_model_id, embedding_backend, load_embedder
from ragcache.router.index import EMBED_STAGE, INDEX_DIR, ROWS_FILE, chunk_text, embed_texts, index_key, index_step
from ragcache.router.onnx_embed import ONNX_BACKEND, ONNX_RECIPE, OnnxEmbedder, onnx_available

TEXTS = [f"{name}\n{text}" for files in TOPICS.values() for name, text in files.items()]
TEXTS += ["short", "SQLite is a C-language library " * 60]  # one word, and one past the 256-token cut


def test_auto_picks_onnx_when_installed_and_names_the_backend_in_the_model_id() -> None:
    assert onnx_available()  # ragcache[local] installs onnxruntime and onnx
    assert embedding_backend("all-MiniLM-L6-v2") == ONNX_BACKEND
    torch_id = embedder_model_id("all-MiniLM-L6-v2#torch")
    onnx_id = embedder_model_id("all-MiniLM-L6-v2")
    assert onnx_id == embedder_model_id(f"all-MiniLM-L6-v2#{ONNX_BACKEND}") == f"{torch_id}+{ONNX_RECIPE}"
    assert torch_id.startswith("st:all-MiniLM-L6-v2@") and "/" not in onnx_id  # no paths in keys
    folder = str(_default_folder_and_id()[0])  # another folder stays on torch unless it asks for onnx-int8
    assert embedding_backend(folder) == "torch" and embedding_backend(f"{folder}#{ONNX_BACKEND}") == ONNX_BACKEND


def test_unknown_backend_is_a_config_error_naming_the_spec() -> None:
    with pytest.raises(ConfigError, match=r"all-MiniLM-L6-v2#fp8.*torch"):
        embedder_model_id("all-MiniLM-L6-v2#fp8")


def test_onnx_vectors_are_close_to_torch(small_build: Path) -> None:
    corpus = load_corpus(small_build)
    chunks = [chunk_text(corpus, c) for c in corpus.chunks]
    reference = load_embedder("all-MiniLM-L6-v2#torch")
    fast = load_embedder(f"all-MiniLM-L6-v2#{ONNX_BACKEND}")
    vectors, expected = embed_texts(fast, chunks), embed_texts(reference, chunks)
    assert isinstance(fast, OnnxEmbedder) and vectors.shape == expected.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * expected).sum(axis=1)  # int8 chunks: measured 0.994 mean on corpora/sqlite
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.97, cosine
    questions = ["What types does SQLite store?", "short", TEXTS[-1]]
    for question in questions:  # questions run in fp32: the same vector as torch, to rounding
        assert float(fast.embed_query(question) @ reference.embed_query(question)) >= 0.9999
    ranked = [np.argsort(-(v @ reference.embed_query(questions[0])), kind="stable")[:2] for v in (vectors, expected)]
    assert ranked[0][0] in ranked[1] and ranked[1][0] in ranked[0]  # the best chunks agree, up to a near tie


def test_onnx_vectors_are_byte_identical_run_to_run() -> None:
    fast = load_embedder(f"all-MiniLM-L6-v2#{ONNX_BACKEND}")
    first = embed_texts(fast, TEXTS)
    again = OnnxEmbedder(*_default_folder_and_id())  # a fresh session over the cached int8 file
    assert embed_texts(again, TEXTS).tobytes() == first.tobytes()
    assert fast.embed([]).shape == (0, first.shape[1])


def test_index_is_byte_identical_across_fresh_builds_and_keyed_by_backend(tmp_path: Path) -> None:
    one = build_topics(tmp_path / "a")
    two = build_topics(tmp_path / "b")  # its own index cache: embedded again, not copied
    dense = [(r.build_dir / INDEX_DIR / "dense.faiss").read_bytes() for r in (one, two)]
    assert dense[0] == dense[1]
    keys = {index_key(one.corpus, embedder_model_id(s)) for s in ("all-MiniLM-L6-v2#torch", "all-MiniLM-L6-v2")}
    assert len(keys) == 2  # a change of backend is a different index


def test_a_rebuild_embeds_only_changed_chunks_and_equals_a_fresh_build(tmp_path: Path) -> None:
    def edit(root: Path) -> None:
        doc = root / "topics" / "docs" / "cooking" / "bread.md"
        doc.write_text(doc.read_text(encoding="utf-8") + "\nRest the loaf for an hour before slicing.\n", "utf-8")

    build_topics(tmp_path / "a")
    edit(tmp_path / "a")
    totals: list[int] = []
    step = index_step(
        cache=tmp_path / "a" / "cache-2", progress=lambda s, _, t: totals.append(t) if s == EMBED_STAGE else None
    )
    again = build_corpus(
        tmp_path / "a" / "topics", tmp_path / "a" / "build", steps=(step,), work_dir=tmp_path / "a" / "work"
    )
    chunks = len(again.corpus.chunks)
    assert 0 < totals[-1] < chunks / 4, (totals, chunks)  # only the edited document's chunks were embedded
    make_topic_corpus(tmp_path / "b" / "topics")
    edit(tmp_path / "b")
    fresh = build_topics(tmp_path / "b")  # the same corpus, embedded from nothing (its own index cache)
    rows = [json.loads((r.build_dir / INDEX_DIR / ROWS_FILE).read_text()) for r in (again, fresh)]
    assert rows[0] == rows[1] and len(rows[0]) == chunks
    dense = [(r.build_dir / INDEX_DIR / "dense.faiss").read_bytes() for r in (again, fresh)]
    assert dense[0] == dense[1]  # the kept vectors are the bytes a fresh build computes


def test_build_summary_reports_chunks_per_second_and_backend() -> None:
    report = ProgressReporter(None, interval_s=3600)
    report(EMBED_STAGE, 0, 40)
    report.stages[EMBED_STAGE].started -= 2.0  # 40 chunks over two seconds
    report(EMBED_STAGE, 40, 40)
    line = _index_line(report, False, 40, "all-MiniLM-L6-v2")
    assert line.startswith("router index: embedded 40 chunks in 2.") and f"chunks/s, {ONNX_BACKEND} backend" in line
    rate = float(line.split("(")[1].split(" chunks/s")[0])
    assert 19.0 <= rate <= 20.0
    assert "reused" in _index_line(ProgressReporter(None), False, 40, "all-MiniLM-L6-v2")
    assert "; 10 unchanged chunks kept" in _index_line(report, False, 50, "all-MiniLM-L6-v2")


def _default_folder_and_id() -> tuple[Path, str]:
    from ragcache.router.embeddings import default_model_path

    return default_model_path(), embedder_model_id(f"all-MiniLM-L6-v2#{ONNX_BACKEND}")


def test_worker_processes_give_the_same_bytes_as_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """RAGCACHE_EMBED_WORKERS: per-text vectors do not depend on which process (or thread count) made them."""
    import ragcache.router.index as index_module

    embedder = load_embedder("all-MiniLM-L6-v2")
    monkeypatch.setattr(index_module, "_EMBED_BATCH", 1)  # enough batches for a pool with a few texts
    seen: list[tuple[int, int]] = []
    pooled = embed_texts(embedder, TEXTS, lambda _s, done, total: seen.append((done, total)), workers=2)
    alone = embed_texts(embedder, TEXTS, workers=1)
    assert pooled.tobytes() == alone.tobytes()
    assert seen[0] == (0, len(TEXTS)) and seen[-1] == (len(TEXTS), len(TEXTS)) and len(seen) == len(TEXTS) + 1


def test_embed_switches_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragcache.router.embeddings import embed_device
    from ragcache.router.index import embed_workers

    monkeypatch.setenv("RAGCACHE_EMBED_DEVICE", "tpu")
    with pytest.raises(ConfigError, match=r"RAGCACHE_EMBED_DEVICE='tpu'.*cuda"):
        embed_device()
    monkeypatch.setenv("RAGCACHE_EMBED_DEVICE", "cpu")
    assert embed_device() == "cpu" and embedding_backend("all-MiniLM-L6-v2") == ONNX_BACKEND
    monkeypatch.setenv("RAGCACHE_EMBED_WORKERS", "0")
    with pytest.raises(ConfigError, match="RAGCACHE_EMBED_WORKERS='0'"):
        embed_workers()
    monkeypatch.setenv("RAGCACHE_EMBED_WORKERS", "3")
    assert embed_workers() == 3
