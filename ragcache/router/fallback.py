"""The simplest router behind the router interface: the full corpus if it fits, else the first block that does.

It needs no embeddings, so it always works; the hybrid router
(:mod:`ragcache.router.policy`) implements the same two methods:
``route(question, previous=None) -> Route`` and ``prefixes() -> list[tuple[str, ...]]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragcache.errors import EmptyCorpusError, RoutingError
from ragcache.router.types import Route

if TYPE_CHECKING:
    from ragcache.corpus.manifest import CompiledCorpus

__all__ = ["FirstFitRouter"]


class FirstFitRouter:
    """Routes every question to one prefix: ``full`` when it fits ``budget_tokens``, else the first fitting block."""

    def __init__(self, corpus: CompiledCorpus, budget_tokens: int) -> None:
        self.corpus = corpus
        self.budget = budget_tokens
        self._route = self._pick()

    @property
    def mode(self) -> str:
        return self._route.mode

    def route(self, question: str, previous: Route | None = None) -> Route:
        """The same route for every question (``previous`` only marks it sticky)."""
        sticky = previous is not None and previous.block_ids == self._route.block_ids
        return Route(self._route.mode, self._route.block_ids, sticky=sticky, reason=self._route.reason)

    def prefixes(self) -> list[tuple[str, ...]]:
        """The one prefix this router emits."""
        return [self._route.block_ids]

    def _pick(self) -> Route:
        blocks = self.corpus.category_block_ids()
        if not blocks:
            raise EmptyCorpusError(
                f"corpus {self.corpus.name!r} ({self.corpus.root}) has no documents; add documents and rebuild"
            )
        full = self.corpus.full_block_id
        if full is not None and self.corpus.block(full).tokens <= self.budget:
            reason = f"whole corpus ({self.corpus.block(full).tokens} tokens) fits the {self.budget}-token budget"
            return Route("full", (full,), reason=reason)
        for block_id in blocks:
            tokens = self.corpus.block(block_id).tokens
            if tokens <= self.budget:
                return Route("category", (block_id,), reason=f"first block that fits ({tokens} <= {self.budget})")
        smallest = min(self.corpus.block(b).tokens for b in blocks)
        raise RoutingError(
            f"corpus {self.corpus.name!r}: no block fits the {self.budget}-token budget (smallest has {smallest}); "
            "rebuild with a smaller build.max_block_tokens or use a model with a larger context window"
        )
