"""The corpora one server serves, by name, and their summaries for ``/v1/corpora``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ragcache.app import RagCache
from ragcache.config import Config, load_config
from ragcache.errors import ConfigError, CorpusNotFoundError
from ragcache.server.schemas import CorpusSummary

__all__ = ["Corpora", "ServeTarget", "corpus_summary", "preload"]

log = logging.getLogger("ragcache.server")

# What ``create_app`` serves: a config (or its path; None = the defaults), one facade, or several.
ServeTarget = Config | RagCache | Sequence[RagCache] | Mapping[str, RagCache] | str | os.PathLike | None


class Corpora:
    """Facades by corpus name, in the order given; the first is the default of ``/v1/ask``."""

    def __init__(self, rags: Sequence[RagCache]) -> None:
        self._rags: dict[str, RagCache] = {}
        for rag in rags:
            name = rag.corpus.name
            if name in self._rags:
                raise ConfigError(f"two served corpora are both named {name!r}; corpus names must be unique")
            self._rags[name] = rag
        if not self._rags:
            raise ConfigError("the server needs at least one corpus")

    @classmethod
    def load(cls, target: ServeTarget) -> Corpora:
        """Facades from a config (loading its corpus and backend) or as given."""
        if target is None or isinstance(target, str | os.PathLike):
            target = load_config(target)
        if isinstance(target, Config):
            return cls([RagCache.from_config(target)])
        if isinstance(target, RagCache):
            return cls([target])
        if isinstance(target, Mapping):
            return cls(list(target.values()))
        return cls(list(target))

    @property
    def default(self) -> str:
        return next(iter(self._rags))

    @property
    def config(self) -> Config:
        """The config of the default corpus (server settings come from it)."""
        return self._rags[self.default].config

    def get(self, name: str) -> RagCache:
        """The facade serving ``name``; the error names the served ones."""
        try:
            return self._rags[name]
        except KeyError:
            served = ", ".join(sorted(self._rags))
            raise CorpusNotFoundError(
                f"model {name!r} does not exist: models are the served corpus names ({served})"
            ) from None

    def replace(self, name: str, rag: RagCache) -> RagCache:
        """Serve ``name`` from ``rag`` from now on (one dict store: requests that already hold the
        previous facade finish on it); the previous facade."""
        previous = self.get(name)
        self._rags[name] = rag
        return previous

    def names(self) -> list[str]:
        return list(self._rags)

    def items(self) -> Iterator[tuple[str, RagCache]]:
        return iter(self._rags.items())

    def __iter__(self) -> Iterator[RagCache]:
        return iter(self._rags.values())


def preload(rag: RagCache) -> None:
    """Read everything a request may need from the build folder into memory (block texts, chunks, the
    router index, the conversation planner), so the facade keeps answering after a rebuild replaces that
    folder and no request pays for loading."""
    for block_id in rag.corpus.blocks:
        rag.corpus.block_text(block_id)
    _ = rag.corpus.chunks
    if rag.corpus.chunks and (rag.corpus.root / "index").is_dir():
        getattr(rag.router, "index", None)  # HybridRouter opens it on first use
    _ = rag.conversations  # the planner and the corpus's tokenizer: else the first turns wait for them under a lock


def corpus_summary(rag: RagCache, ready: bool) -> CorpusSummary:
    """The manifest of ``rag.corpus`` in brief, plus the prefixes the router can use."""
    manifest = rag.corpus.manifest
    return CorpusSummary(
        name=manifest.name,
        title=manifest.title,
        fingerprint=manifest.fingerprint,
        tokenizer=manifest.tokenizer,
        tokens=sum(c.tokens for c in manifest.categories),
        documents=len(manifest.documents),
        chunks=manifest.chunk_count,
        categories=[
            {"id": c.id, "title": c.title, "tokens": c.tokens, "blocks": list(c.block_ids)} for c in manifest.categories
        ],
        blocks=[
            {
                "id": b.id,
                "kind": b.kind,
                "sha256": b.sha256,
                "tokens": b.tokens,
                "bytes": b.bytes,
                "documents": len(b.documents),
            }
            for b in manifest.blocks
        ],
        prefixes=_prefixes(rag),
        ready=ready,
    )


def _prefixes(rag: RagCache) -> list[dict[str, Any]]:
    try:
        prompts = rag.prefixes()
    except Exception as exc:  # a summary must not fail because one part cannot be listed
        log.warning("listing prefixes of %r failed: %s", rag.corpus.name, exc)
        return []
    return [
        {
            "fingerprint": prompt.prefix_fingerprint,
            "blocks": [s.block_id for s in prompt.stable if s.block_id],
            "mode": prompt.route.mode if prompt.route is not None else None,
        }
        for prompt in prompts
    ]
