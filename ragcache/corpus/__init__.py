"""Corpus manager: sources → normalize → compile → manifest/store.

``build_corpus`` lives in :mod:`ragcache.corpus.compile` (it imports LlamaIndex,
so it is not imported here); reading a build is cheap.
"""

from ragcache.corpus.manifest import CompiledCorpus, Manifest
from ragcache.corpus.store import default_build_dir, load_corpus

__all__ = ["CompiledCorpus", "Manifest", "default_build_dir", "load_corpus"]
