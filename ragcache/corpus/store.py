"""Finding a compiled corpus on disk."""

from __future__ import annotations

from pathlib import Path

from ragcache.config import BUILD_SUBDIR
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.errors import CorpusError

__all__ = ["BUILD_SUBDIR", "default_build_dir", "load_corpus"]


def default_build_dir(corpus_dir: str | Path) -> Path:
    """Where ``ragcache build CORPUS_DIR`` writes by default."""
    return Path(corpus_dir) / BUILD_SUBDIR


def load_corpus(path: str | Path) -> CompiledCorpus:
    """Load a build dir, or a corpus dir's default build. Never builds: that is `ragcache build`."""
    path = Path(path)
    if (path / "manifest.json").exists():
        return CompiledCorpus.load(path)
    if (path / "corpus.yaml").exists():
        build = default_build_dir(path)
        if not (build / "manifest.json").exists():
            raise CorpusError(f"{path}: corpus is not built yet ({build} missing); run `ragcache build {path}`")
        return CompiledCorpus.load(build)
    if not path.exists():
        raise CorpusError(f"{path}: no such corpus or build folder")
    raise CorpusError(f"{path}: neither a corpus folder (corpus.yaml) nor a build (manifest.json)")
