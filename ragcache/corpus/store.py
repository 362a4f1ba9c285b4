"""Finding a compiled corpus on disk, and keeping a corpus's default build current."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ragcache.config import BUILD_SUBDIR
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.errors import CorpusError

if TYPE_CHECKING:
    from ragcache.corpus.compile import BuildResult, BuildStep

__all__ = ["BUILD_SUBDIR", "build_staleness", "default_build_dir", "ensure_built", "load_corpus"]


def default_build_dir(corpus_dir: str | Path) -> Path:
    """Where ``ragcache build CORPUS_DIR`` writes by default."""
    return Path(corpus_dir) / BUILD_SUBDIR


def load_corpus(path: str | Path) -> CompiledCorpus:
    """Load a build dir, or a corpus dir's default build. Never builds (`ragcache build` does).

    Opening is cheap: every block file must exist with its recorded size (a truncated one fails
    here, naming it); a block's SHA-256 is checked when it is first read, before any use.
    """
    path = Path(path)
    if (path / "manifest.json").exists():
        return _verified(CompiledCorpus.load(path))
    if (path / "corpus.yaml").exists():
        build = default_build_dir(path)
        if not (build / "manifest.json").exists():
            raise CorpusError(f"{path}: corpus is not built yet ({build} missing); run `ragcache build {path}`")
        return _verified(CompiledCorpus.load(build))
    if not path.exists():
        raise CorpusError(f"{path}: no such corpus or build folder")
    raise CorpusError(f"{path}: neither a corpus folder (corpus.yaml) nor a build (manifest.json)")


def _verified(corpus: CompiledCorpus) -> CompiledCorpus:
    corpus.check_files()
    return corpus


def build_staleness(corpus_dir: str | Path) -> str | None:
    """Why the default build of ``corpus_dir`` needs (re)building, or None when it is current.

    Current means a manifest newer than every source file; mtimes only decide
    *whether* to build, never what is written.
    """
    corpus_dir = Path(corpus_dir)
    manifest = default_build_dir(corpus_dir) / "manifest.json"
    if not manifest.exists():
        return "not built yet"
    built_at = manifest.stat().st_mtime
    sources = (p for p in corpus_dir.rglob("*") if p.is_file() and ".ragcache" not in p.parts)
    if any(p.stat().st_mtime > built_at for p in sources):
        return "changed since its build"
    return None


def ensure_built(
    corpus_dir: str | Path,
    *,
    steps: Sequence[BuildStep] = (),
    progress: Callable[[str, int, int], None] | None = None,
) -> BuildResult | None:
    """(Re)build the default build of ``corpus_dir`` when it is missing or stale; None when it was current.

    ``steps`` are extra build steps (the CLI passes the router's index step: the
    corpus package does not know the router).
    """
    from ragcache.corpus.compile import build_corpus  # compile imports this module

    if build_staleness(corpus_dir) is None:
        return None
    return build_corpus(corpus_dir, progress=progress, steps=steps)
