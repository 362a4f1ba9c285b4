"""A build older than its sources is noticed (corpus/staleness.py) and reported or refused (app.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragcache.app import RagCache
from ragcache.config import Config
from ragcache.corpus.compile import build_corpus
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.corpus.staleness import source_changes
from ragcache.errors import CorpusError


def _corpus(tmp_path: Path) -> tuple[Path, CompiledCorpus]:
    root = tmp_path / "notes"
    (root / "docs").mkdir(parents=True)
    (root / "corpus.yaml").write_text("name: notes\n", encoding="utf-8")
    (root / "docs" / "a.md").write_text("# A\n\nAlpha.\n", encoding="utf-8")
    (root / "docs" / "b.md").write_text("# B\n\nBeta.\n", encoding="utf-8")
    (root / "docs" / "skip.bin").write_bytes(b"\0")  # not included: never a change
    return root, build_corpus(root).corpus


def _later(path: Path) -> None:
    """Give ``path`` an mtime after the build's manifest (file systems with coarse clocks included)."""
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))


def test_a_fresh_build_and_a_touched_but_identical_file_are_current(tmp_path: Path) -> None:
    root, build = _corpus(tmp_path)
    assert source_changes(root, build) is None
    _later(root / "docs" / "a.md")
    assert source_changes(root, build) is None


def test_edited_new_and_deleted_files_are_named_with_the_fix(tmp_path: Path) -> None:
    root, build = _corpus(tmp_path)
    (root / "docs" / "a.md").write_text("# A\n\nAlpha, edited.\n", encoding="utf-8")
    _later(root / "docs" / "a.md")
    (root / "docs" / "c.md").write_text("# C\n", encoding="utf-8")
    (root / "docs" / "b.md").unlink()
    changes = source_changes(root, build)
    assert changes is not None
    assert (changes.changed, changes.added, changes.removed) == (("docs/a.md",), ("docs/c.md",), ("docs/b.md",))
    message = changes.message()
    assert "3 source files have changed" in message
    assert "docs/a.md (edited), docs/c.md (new), docs/b.md (deleted)" in message
    assert f"`ragcache build {root}`" in message


def test_an_edit_that_keeps_the_old_mtime_is_not_hashed(tmp_path: Path) -> None:
    """The cheap path: files not modified after the build are trusted (one stat each, no reading)."""
    root, build = _corpus(tmp_path)
    doc = root / "docs" / "a.md"
    before = doc.stat()
    doc.write_text("# A\n\nAlpha, edited.\n", encoding="utf-8")
    os.utime(doc, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert source_changes(root, build) is None


def test_a_newer_corpus_yaml_counts_and_a_bare_build_has_nothing_to_compare(tmp_path: Path) -> None:
    root, build = _corpus(tmp_path)
    _later(root / "corpus.yaml")
    changes = source_changes(root, build)
    assert changes is not None and changes.changed == ("corpus.yaml",)
    assert source_changes(build.root, build) is None


def test_stale_build_fail_refuses_before_loading_the_backend(tmp_path: Path) -> None:
    root, _ = _corpus(tmp_path)
    (root / "docs" / "a.md").write_text("# A\n\nchanged\n", encoding="utf-8")
    _later(root / "docs" / "a.md")
    config = Config(corpus=root, stale_build="fail", backend={"kind": "no-such-backend"})  # never reached
    with pytest.raises(CorpusError, match=r"1 source file has changed .*docs/a.md \(edited\).*stale_build: fail"):
        RagCache.from_config(config)
