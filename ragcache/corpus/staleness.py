"""Is a build older than its corpus's sources? The cheap check ``ask``, ``chat`` and ``serve`` run at start.

A build records each document's SHA-256 (manifest.json). The check walks
``docs/`` (the spec's include/exclude globs), compares the file list with the
manifest's, and hashes only the files modified after the manifest was written:
a corpus whose files did not change since its build costs one directory walk
and a ``stat`` per file, however large. A touched but identical file is not a
change. ``corpus.yaml`` newer than the build counts as changed (its effect on
the blocks is only known by building). Mtimes decide only what is hashed, never
what a build contains (docs/architecture.md, invariant 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ragcache.corpus.manifest import CompiledCorpus
from ragcache.corpus.sources import DOCS_DIR
from ragcache.corpus.spec import SPEC_FILE, CorpusSpec, glob_match, load_spec
from ragcache.errors import CorpusError
from ragcache.hashing import content_hash

__all__ = ["SourceChanges", "source_changes"]

_SHOWN = 5  # files named in the message; the rest are counted


@dataclass(frozen=True)
class SourceChanges:
    """Source files (paths relative to the corpus folder) that differ from the build in use."""

    corpus_dir: Path
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.changed) + len(self.added) + len(self.removed)

    def message(self) -> str:
        """One line: how many files changed, the first few, and the command that fixes it."""
        files = [f"{p} (edited)" for p in self.changed]
        files += [f"{p} (new)" for p in self.added] + [f"{p} (deleted)" for p in self.removed]
        shown = ", ".join(files[:_SHOWN]) + (f", and {len(files) - _SHOWN} more" if len(files) > _SHOWN else "")
        noun = "file has" if self.count == 1 else "files have"
        return (
            f"{self.corpus_dir}: the build is stale: {self.count} source {noun} changed since it was built "
            f"({shown}); answers use the old text until you run `ragcache build {self.corpus_dir}`"
        )


def source_changes(corpus_dir: str | Path, build: CompiledCorpus) -> SourceChanges | None:
    """What changed in ``corpus_dir``'s sources since ``build`` was written; None when nothing did
    (or ``corpus_dir`` is not a corpus folder: a bare build has no sources to compare)."""
    corpus_dir = Path(corpus_dir)
    spec_path = corpus_dir / SPEC_FILE
    if not spec_path.is_file():
        return None
    try:
        built_ns = (build.root / "manifest.json").stat().st_mtime_ns
    except OSError:
        return None  # a build being swapped in: the next check sees it
    try:
        spec = load_spec(corpus_dir)
    except CorpusError:
        return SourceChanges(corpus_dir, changed=(SPEC_FILE,))
    current = _source_files(corpus_dir / DOCS_DIR, spec)
    recorded = build.documents
    changed = [SPEC_FILE] if spec_path.stat().st_mtime_ns > built_ns else []
    changed += [
        f"{DOCS_DIR}/{rel}"
        for rel, path in current.items()
        if rel in recorded and _edited(path, recorded[rel].sha256, built_ns)
    ]
    changes = SourceChanges(
        corpus_dir,
        changed=tuple(changed),
        added=tuple(f"{DOCS_DIR}/{rel}" for rel in current if rel not in recorded),
        removed=tuple(f"{DOCS_DIR}/{rel}" for rel in sorted(recorded) if rel not in current),
    )
    return changes if changes.count else None


def _source_files(docs_dir: Path, spec: CorpusSpec) -> dict[str, Path]:
    """The documents a build would read, by their path under ``docs/``, sorted (no reading, no parsing)."""
    files = {}
    for path in docs_dir.rglob("*"):
        rel = path.relative_to(docs_dir).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or not path.is_file():
            continue
        if any(glob_match(g, rel) for g in spec.include) and not any(glob_match(g, rel) for g in spec.exclude):
            files[rel] = path
    return dict(sorted(files.items()))


def _edited(path: Path, recorded_sha256: str, built_ns: int) -> bool:
    """Whether ``path`` differs from its recorded bytes: hashed only when modified after the build."""
    try:
        if path.stat().st_mtime_ns <= built_ns:
            return False
        return content_hash(path.read_bytes()) != recorded_sha256
    except OSError:
        return True
