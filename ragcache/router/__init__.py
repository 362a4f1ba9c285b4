"""Routing: which stable prefix answers a question (docs/architecture.md, invariant 4).

Every router satisfies :class:`Router`: ``route(question) -> Route``, the
enumerable prefix set ``prefixes()``, and what a conversation needs to keep its
route and retrieve each turn's tail (``fused_scores``, ``tail``, ``walk_tail``,
``preferred_run``, ``make_route``); :func:`create_router` is the one place that picks the implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ragcache.prompt import Route, RouteMode, RouteTokens, Snippet

if TYPE_CHECKING:
    import numpy as np

    from ragcache.backends.base import Capabilities
    from ragcache.backends.profile import CacheProfile
    from ragcache.config import RouterConfig
    from ragcache.corpus.manifest import CompiledCorpus

__all__ = ["Route", "RouteMode", "RouteTokens", "Router", "Snippet", "create_router"]


@runtime_checkable
class Router(Protocol):
    """What :class:`~ragcache.app.RagCache` needs from a router."""

    window: int  # the context window it routes for (tokens)
    profile: CacheProfile  # the backend's cache economics every price is read from
    read_price: float  # a cached read, relative to an uncached input token (profile.read_multiplier)
    write_price: float  # a cache write at the profile's TTL, relative to an uncached input token

    def route(self, question: str, *, observe: bool = True, now: float | None = None) -> Route:
        """The route for ``question``; ``observe``: count the question as traffic (a real request),
        else route without side effects. ``now``: the caller's clock (s), so runs are priced by the
        cache state observed on it (None: by the demand prior)."""
        ...

    def fused_scores(self, queries: Sequence[tuple[str, float]]) -> np.ndarray:
        """Per chunk, the weighted relevance of ``(text, weight)`` queries."""
        ...

    def ranking(self, fused: np.ndarray) -> np.ndarray:
        """Chunk indexes best first."""
        ...

    def tail(
        self, fused: np.ndarray, block_ids: Sequence[str], tokens: int, exclude: frozenset[str] = frozenset()
    ) -> tuple[Snippet, ...]:
        """The best chunks outside ``block_ids`` and ``exclude`` within ``tokens``."""
        ...

    def walk_tail(
        self,
        fused: np.ndarray,
        block_ids: Sequence[str],
        carried: frozenset[str],
        allowance: float,
        room: int,
        minimum: int = 0,
        premium: float = 0.0,
        depth: int = 0,
    ) -> tuple[tuple[Snippet, ...], bool]:
        """A later turn's excerpts: superset of top-k at the read price of what the prompt carries."""
        ...

    def preferred_run(self, fused: np.ndarray, pinned: Sequence[str]) -> tuple[str, ...] | None:
        """Blocks a conversation pinned to ``pinned`` should move to, or None."""
        ...

    def reanchor_run(
        self, fused: np.ndarray, pinned: Sequence[str], budget: int, now: float | None = None
    ) -> tuple[str, ...]:
        """Blocks a re-anchoring conversation turn goes on with (``()``: top-k)."""
        ...

    def make_route(
        self,
        mode: str,
        block_ids: tuple[str, ...],
        snippets: tuple[Snippet, ...],
        reason: str,
        scores: dict[str, float] | None = None,
        sticky: bool = False,
    ) -> Route:
        """A route whose documents and tokens are those of ``block_ids`` and ``snippets``."""
        ...

    def prefixes(self) -> list[tuple[str, ...]]:
        """Every corpus-block tuple this router can emit, in canonical order."""
        ...


def create_router(
    corpus: CompiledCorpus,
    router_config: RouterConfig,
    capabilities: Capabilities,
    reserved_output: int,
    profile: CacheProfile | None = None,
) -> Router:
    """The router for ``corpus`` on a backend with ``capabilities``, pricing with ``profile``
    (the backend's cache economics; None: claude-sonnet-4-5 at 5 minutes)."""
    from ragcache.router.policy import HybridRouter

    return HybridRouter(corpus, router_config, capabilities, reserved_output, profile=profile)
