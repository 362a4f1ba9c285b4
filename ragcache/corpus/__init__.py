"""Corpus manager: sources → normalize → compile → manifest/store."""

from ragcache.corpus.manifest import CompiledCorpus, Manifest

__all__ = ["CompiledCorpus", "Manifest"]
