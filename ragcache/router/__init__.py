"""Routing: which stable prefix answers a question (see DESIGN.md, invariant 4)."""

from ragcache.router.types import Route, RouteMode, Snippet

__all__ = ["Route", "RouteMode", "Snippet"]
