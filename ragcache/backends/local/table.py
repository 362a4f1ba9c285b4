"""The in-process local engine: self-hosted, priced in prefill work, its KV store bounded by memory.

A write is one prefill (1.0), a read skips it (0.0); prefixes stay until the KV store's
LRU evicts them. The engine reports exact prefix tokens and its own cache diagnostics.
"""

from __future__ import annotations

from ragcache.backends.profile import VendorTable

__all__ = ["TABLE"]

TABLE = VendorTable(
    vendor="local",
    as_of="2026-12-07",
    source="docs/architecture.md",
    ttls={"lru": None},
    default_ttl="lru",
    window=8192,
    min_cacheable=0,
    models={},
    self_hosted=True,
    read_multiplier=0.0,
    write_multiplier=1.0,
    supports_prewarm=True,
    supports_diagnostics=True,
    per_process_cache=True,
)
