"""Self-hosted vLLM: no token price; a write is a prefill, a read skips it, KV memory bounds the cache.

Multipliers are in prefill work relative to an uncached token: a write is one prefill
(1.0) and a read skips it (0.0: what remains is each new token's attention over the
cached ones, paid per generated token, not per cached one). There is no TTL: prefixes
live until LRU evicts them under KV-memory pressure. ``cache_salt`` isolates requests.
"""

from __future__ import annotations

from ragcache.backends.profile import VendorTable

__all__ = ["TABLE"]

TABLE = VendorTable(
    vendor="vllm",
    as_of="2026-12-07",
    source="https://docs.vllm.ai/en/latest/design/prefix_caching.html",
    ttls={"lru": None},
    default_ttl="lru",
    window=8192,
    min_cacheable=0,
    models={},
    self_hosted=True,
    read_multiplier=0.0,
    write_multiplier=1.0,
    supports_salt=True,
    supports_prewarm=True,
    supports_diagnostics=True,
)
