"""Routing: which stable prefix answers a question (see DESIGN.md, invariant 4).

Every router satisfies :class:`Router`: ``route(question, previous=None) -> Route``
and ``prefixes() -> list[tuple[str, ...]]`` (the enumerable prefix set);
:func:`create_router` is the one place that picks the implementation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ragcache.prompt import Route, RouteMode, RouteTokens, Snippet

if TYPE_CHECKING:
    from ragcache.backends.base import Capabilities
    from ragcache.config import RouterConfig
    from ragcache.corpus.manifest import CompiledCorpus

__all__ = ["Route", "RouteMode", "RouteTokens", "Router", "Snippet", "create_router"]


@runtime_checkable
class Router(Protocol):
    """What :class:`~ragcache.app.RagCache` needs from a router."""

    def route(self, question: str, previous: Route | None = None, *, observe: bool = True) -> Route:
        """The route for ``question``; ``previous`` is the session's last route (stickiness);
        ``observe``: count the question as traffic (a real request), else route without side effects."""
        ...

    def prefixes(self) -> list[tuple[str, ...]]:
        """Every corpus-block tuple this router can emit, in canonical order."""
        ...


def create_router(
    corpus: CompiledCorpus,
    router_config: RouterConfig,
    capabilities: Capabilities,
    reserved_output: int,
) -> Router:
    """The router for ``corpus`` on a backend with ``capabilities``."""
    from ragcache.router.policy import HybridRouter

    return HybridRouter(corpus, router_config, capabilities, reserved_output)
