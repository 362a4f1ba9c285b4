"""corpus.store: a corpus's default build is (re)built when missing or stale, and only then."""

from __future__ import annotations

import os
from pathlib import Path

from ragcache.corpus.store import build_staleness, default_build_dir, ensure_built, load_corpus


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
