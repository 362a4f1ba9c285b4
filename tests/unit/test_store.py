"""corpus.store: a corpus's default build is (re)built when missing or stale, and only then."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragcache.corpus.store import build_staleness, default_build_dir, ensure_built, load_corpus
from ragcache.errors import CorpusError


def _corpus(root: Path) -> Path:
    (root / "docs" / "faq").mkdir(parents=True)
    spec = "name: t\ninstructions: Answer.\nbuild: {tokenizer: chars, min_block_tokens: 0}\n"
    (root / "corpus.yaml").write_text(spec)
    (root / "docs" / "faq" / "a.md").write_text("# A\n\nThe letter A comes first.\n")
    return root


def test_ensure_built_builds_once_then_again_only_after_a_source_changes(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "t")
    assert build_staleness(corpus) == "not built yet"
    stages: list[str] = []
    first = ensure_built(corpus, progress=lambda stage, done, total: stages.append(stage))
    assert first is not None and first.build_dir == default_build_dir(corpus)
    assert load_corpus(corpus).fingerprint == first.corpus.fingerprint and "reading documents" in stages
    assert build_staleness(corpus) is None and ensure_built(corpus) is None
    doc = corpus / "docs" / "faq" / "a.md"
    doc.write_text("# A\n\nThe letter A comes first, then B.\n")
    later = (default_build_dir(corpus) / "manifest.json").stat().st_mtime + 10
    os.utime(doc, (later, later))
    assert build_staleness(corpus) == "changed since its build"
    again = ensure_built(corpus)
    assert again is not None and again.corpus.fingerprint != first.corpus.fingerprint


def test_ensure_built_runs_the_callers_steps(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "t")
    seen: list[Path] = []
    ensure_built(corpus, steps=(lambda build, compiled, previous: seen.append(build),))
    assert len(seen) == 1 and seen[0].parent == default_build_dir(corpus).parent  # the temporary build


def test_open_checks_block_sizes_and_a_block_is_hashed_when_first_read(tmp_path: Path) -> None:
    """Opening stats the block files (cheap); the SHA-256 is checked before a block is first used."""
    corpus = _corpus(tmp_path / "t")
    ensure_built(corpus)
    block = next(b for b in load_corpus(corpus).manifest.blocks if b.kind == "category")
    path = default_build_dir(corpus) / block.filename
    good = path.read_bytes()
    path.write_bytes(bytes([good[0] ^ 0x01]) + good[1:])  # same size, other bytes: found on first read
    opened = load_corpus(corpus)
    with pytest.raises(CorpusError, match="SHA-256") as caught:
        opened.block_text(block.id)
    assert str(path) in str(caught.value)
    with pytest.raises(CorpusError, match="SHA-256"):
        load_corpus(corpus).verify()  # the explicit full check reads every block
    path.write_bytes(good[: len(good) // 2])  # truncated: found when opening
    with pytest.raises(CorpusError, match=rf"{path}: block .* does not match its SHA-256 \(\d+ of {len(good)} bytes"):
        load_corpus(corpus)
    path.unlink()
    with pytest.raises(CorpusError, match=rf"{path}: cannot read block"):
        load_corpus(corpus)
    path.write_bytes(good)
    assert load_corpus(corpus).block_text(block.id) == good.decode("utf-8")
