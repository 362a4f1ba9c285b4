"""ragcache: long-context RAG over a stable, cached corpus."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Answer", "RagCache", "build_corpus", "load_config", "load_corpus"]

if TYPE_CHECKING:
    from ragcache.app import Answer, RagCache
    from ragcache.config import load_config
    from ragcache.corpus.compile import build_corpus
    from ragcache.corpus.store import load_corpus

_LAZY = {
    "Answer": "ragcache.app",
    "RagCache": "ragcache.app",
    "load_config": "ragcache.config",
    "build_corpus": "ragcache.corpus.compile",
    "load_corpus": "ragcache.corpus.store",
}


def __getattr__(name: str) -> Any:
    """Import the public API lazily so `import ragcache` stays cheap."""
    if name in _LAZY:
        module = __import__(_LAZY[name], fromlist=[name])
        return getattr(module, name)
    raise AttributeError(f"module 'ragcache' has no attribute {name!r}")
