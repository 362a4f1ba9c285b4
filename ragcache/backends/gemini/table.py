"""Google Gemini API's dated table: prices (USD per 1M tokens, prompts <= 200k), storage, minimums.

Sources and the date each figure was read: docs/vendors.md. Creating an explicit cache
bills its tokens at the input price and the request that created it reads them at the
cached price (write = input + cached read); storage bills per 1M token-hours whether
the cache is read or not. The >200k-token price tier is not modelled.
"""

from __future__ import annotations

from ragcache.backends.profile import ModelRow, VendorTable

__all__ = ["TABLE"]

_M1 = 1_048_576


def _row(input: float, cached: float, output: float, storage: float, *, min_cacheable: int, as_of: str) -> ModelRow:
    write = round(input + cached, 6)
    return ModelRow(
        input=input,
        output=output,
        cached_read=cached,
        cache_write={"5m": write, "1h": write},
        storage_1h=storage,
        window=_M1,
        min_cacheable=min_cacheable,
        as_of=as_of,
    )


TABLE = VendorTable(
    vendor="gemini",
    as_of="2026-12-07",
    source="https://ai.google.dev/gemini-api/docs/pricing",
    ttls={"5m": 300.0, "1h": 3600.0},
    default_ttl="1h",
    window=_M1,
    min_cacheable=4096,  # an unknown model: the larger documented figure (a too-small create is a 400)
    supports_prewarm=True,
    read_multiplier=0.1,  # an unpriced model: the 2.5/3.x families' read discount
    models={
        "gemini-3-pro-preview": _row(2.0, 0.2, 12.0, 4.5, min_cacheable=4096, as_of="2025-12-01"),
        "gemini-3-flash-preview": _row(0.5, 0.05, 3.0, 1.0, min_cacheable=4096, as_of="2025-12-01"),
        "gemini-2.5-pro": _row(1.25, 0.125, 10.0, 4.5, min_cacheable=2048, as_of="2025-12-01"),
        "gemini-2.5-flash-lite": _row(0.1, 0.01, 0.4, 1.0, min_cacheable=2048, as_of="2025-12-01"),
        "gemini-2.5-flash": _row(0.3, 0.03, 2.5, 1.0, min_cacheable=2048, as_of="2025-12-01"),
    },
)
