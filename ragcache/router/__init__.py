"""Routing: which stable prefix answers a question (see DESIGN.md, invariant 4).

Every router has ``route(question, previous=None) -> Route`` and
``prefixes() -> list[tuple[str, ...]]``; :func:`create_router` is the one place
that picks the implementation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragcache.router.types import Route, RouteMode, Snippet

if TYPE_CHECKING:
    from ragcache.backends.base import Capabilities
    from ragcache.config import RouterConfig
    from ragcache.corpus.manifest import CompiledCorpus

__all__ = ["Route", "RouteMode", "Snippet", "create_router"]


def create_router(
    corpus: CompiledCorpus, router_config: RouterConfig, capabilities: Capabilities, reserved_output: int
) -> Any:
    """The hybrid router for ``corpus`` on a backend with ``capabilities`` (budget: window − output − history − stable).

    :class:`~ragcache.router.fallback.FirstFitRouter` stays available as the embedding-free fallback.
    """
    from ragcache.router.policy import HybridRouter

    return HybridRouter(corpus, router_config, capabilities, reserved_output)
