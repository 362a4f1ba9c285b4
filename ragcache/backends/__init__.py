"""Engines behind one protocol; heavy SDKs are imported inside their own module only."""

from ragcache.backends.base import (
    Backend,
    CacheUsage,
    Capabilities,
    Generation,
    GenerationOptions,
    available_backends,
    create_backend,
    register_backend,
)

__all__ = [
    "Backend",
    "CacheUsage",
    "Capabilities",
    "Generation",
    "GenerationOptions",
    "available_backends",
    "create_backend",
    "register_backend",
]
