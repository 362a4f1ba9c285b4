"""Anthropic's dated table: prices (USD per 1M tokens), windows, minimum cacheable prefixes.

Sources and the date each figure was read: docs/vendors.md. Reads bill 0.1x input,
writes 1.25x for the 5-minute TTL and 2x for the 1-hour TTL; a breakpoint looks back
at most 20 content blocks for an earlier cached prefix.
"""

from __future__ import annotations

from ragcache.backends.profile import ModelRow, VendorTable

__all__ = ["TABLE"]


def _row(
    input: float, output: float, *, window: int, min_cacheable: int, as_of: str, read: float | None = None
) -> ModelRow:
    """A row from the family's input/output price and the documented multipliers (0.1 / 1.25 / 2)."""
    return ModelRow(
        input=input,
        output=output,
        cached_read=round(input * 0.1, 6) if read is None else read,
        cache_write={"5m": round(input * 1.25, 6), "1h": round(input * 2.0, 6)},
        window=window,
        min_cacheable=min_cacheable,
        as_of=as_of,
    )


_K200 = 200_000
_M1 = 1_000_000

TABLE = VendorTable(
    vendor="anthropic",
    as_of="2026-12-07",
    source="https://platform.claude.com/docs/en/about-claude/pricing",
    ttls={"5m": 300.0, "1h": 3600.0},
    default_ttl="5m",
    window=_K200,
    min_cacheable=1024,
    max_lookback_blocks=20,
    supports_prewarm=True,  # max_tokens 0 prepares the cache without generating, where the API allows it
    supports_diagnostics=True,  # diagnostics.previous_message_id → cache_miss_reason
    read_multiplier=0.1,  # every model: reads 0.1x, writes 1.25x (5m) / 2x (1h) of input
    write_multipliers={"5m": 1.25, "1h": 2.0},
    models={
        "claude-opus-5": _row(5.0, 25.0, window=_M1, min_cacheable=512, as_of="2026-06-01"),
        "claude-fable-5": _row(10.0, 50.0, window=_M1, min_cacheable=512, as_of="2026-06-01"),
        "claude-sonnet-5": _row(3.0, 15.0, window=_M1, min_cacheable=1024, as_of="2026-06-01"),
        "claude-opus-4-8": _row(5.0, 25.0, window=_K200, min_cacheable=1024, as_of="2026-06-01"),
        "claude-opus-4-7": _row(5.0, 25.0, window=_K200, min_cacheable=2048, as_of="2026-06-01"),
        "claude-opus-4-6": _row(5.0, 25.0, window=_K200, min_cacheable=4096, as_of="2026-06-01"),
        "claude-sonnet-4-6": _row(3.0, 15.0, window=_K200, min_cacheable=1024, as_of="2026-06-01"),
        "claude-opus-4-5": _row(5.0, 25.0, window=_K200, min_cacheable=4096, as_of="2025-11-24"),
        "claude-opus-4-1": _row(15.0, 75.0, window=_K200, min_cacheable=1024, as_of="2025-11-24"),
        "claude-opus-4": _row(15.0, 75.0, window=_K200, min_cacheable=1024, as_of="2025-11-24"),
        "claude-sonnet-4-5": _row(3.0, 15.0, window=_K200, min_cacheable=1024, as_of="2025-11-24"),
        "claude-sonnet-4": _row(3.0, 15.0, window=_K200, min_cacheable=1024, as_of="2025-11-24"),
        "claude-3-7-sonnet": _row(3.0, 15.0, window=_K200, min_cacheable=1024, as_of="2025-11-24"),
        "claude-haiku-4-5": _row(1.0, 5.0, window=_K200, min_cacheable=4096, as_of="2025-11-24"),
        "claude-3-5-haiku": _row(0.8, 4.0, window=_K200, min_cacheable=2048, as_of="2025-11-24"),
        "claude-3-haiku": _row(0.25, 1.25, window=_K200, min_cacheable=2048, as_of="2025-11-24", read=0.03),
    },
)
