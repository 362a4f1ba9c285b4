"""OpenAI's dated table: prices (USD per 1M tokens), windows, cache lifetimes, reasoning models.

Sources and the date each figure was read: docs/vendors.md. Prompts of 1024 tokens or
more are cached automatically. How a model's cache lifetime is asked for
(:func:`cache_api`):

- ``retention`` (models before gpt-5.5): ``prompt_cache_retention`` ``in_memory`` ("5 to
  10 minutes of inactivity", planned with the lower bound) or ``24h``; writes bill as
  plain input;
- ``retention_24h`` (gpt-5.5, gpt-5.5-pro): only ``24h`` is accepted (``in_memory`` is a
  400) and the field is deprecated, so nothing is sent and 24 hours are planned;
- ``options`` (gpt-5.6 and later): ``prompt_cache_options`` — ``ttl`` ``30m`` (Chat
  Completions: the only value) or ``12h`` (Responses), ``mode: explicit`` with
  ``prompt_cache_breakpoint`` parts, ``prewarm`` (Responses); writes are billed.
"""

from __future__ import annotations

from ragcache.backends.profile import ModelRow, VendorTable

__all__ = ["CACHE_APIS", "RESPONSES_MIN_OUTPUT_TOKENS", "TABLE", "cache_api", "is_reasoning_model"]

RESPONSES_MIN_OUTPUT_TOKENS = 16  # the Responses API rejects max_output_tokens below this

_K128 = 128_000  # every model until its window is checked on a vendor page (docs/vendors.md)


_RETENTION = ("in_memory", "24h")
_OPTIONS = ("30m", "12h")


def _row(input: float, cached: float, output: float, *, as_of: str) -> ModelRow:
    return ModelRow(input=input, output=output, cached_read=cached, ttls=_RETENTION, as_of=as_of)


def _writes(input: float, output: float, *, as_of: str) -> ModelRow:
    """A gpt-5.6+ row: reads 0.1x, writes 1.25x for 30 minutes and 2.5x for 12 hours."""
    return ModelRow(
        input=input,
        output=output,
        cached_read=round(input * 0.1, 6),
        cache_write={"30m": round(input * 1.25, 6), "12h": round(input * 2.5, 6)},
        ttls=_OPTIONS,
        as_of=as_of,
    )


TABLE = VendorTable(
    vendor="openai",
    as_of="2026-12-07",
    source="https://platform.openai.com/docs/pricing",
    ttls={"in_memory": 300.0, "24h": 86_400.0, "30m": 1800.0, "12h": 43_200.0},
    default_ttl="in_memory",
    window=_K128,
    min_cacheable=1024,
    supports_diagnostics=False,
    read_multiplier=0.1,  # an unpriced model (an OpenAI-compatible server): the gpt-5 family's read discount
    write_multipliers={"30m": 1.25, "12h": 2.5},  # an unpriced gpt-5.6+/gpt-6 model bills writes
    models={
        "gpt-5.6-sol": _writes(5.0, 30.0, as_of="2026-12-07"),
        "gpt-5.6-terra": _writes(2.5, 15.0, as_of="2026-12-07"),
        "gpt-5.6-luna": _writes(1.0, 6.0, as_of="2026-12-07"),
        "gpt-5.5": ModelRow(input=5.0, output=30.0, cached_read=0.5, ttls=("24h",), as_of="2026-06-01"),
        "gpt-5.4-nano": _row(0.2, 0.02, 1.25, as_of="2026-06-01"),
        "gpt-5.4-mini": _row(0.75, 0.075, 4.5, as_of="2026-06-01"),
        "gpt-5.4": _row(2.5, 0.25, 15.0, as_of="2026-06-01"),
        "gpt-5.2": _row(1.75, 0.175, 14.0, as_of="2026-01-15"),
        "gpt-5.1": _row(1.25, 0.125, 10.0, as_of="2025-11-24"),
        "gpt-5-nano": _row(0.05, 0.005, 0.4, as_of="2025-11-24"),
        "gpt-5-mini": _row(0.25, 0.025, 2.0, as_of="2025-11-24"),
        "gpt-5": _row(1.25, 0.125, 10.0, as_of="2025-11-24"),
        "gpt-4.1-nano": _row(0.1, 0.025, 0.4, as_of="2025-11-24"),
        "gpt-4.1-mini": _row(0.4, 0.1, 1.6, as_of="2025-11-24"),
        "gpt-4.1": _row(2.0, 0.5, 8.0, as_of="2025-11-24"),
        "gpt-4o-mini": _row(0.15, 0.075, 0.6, as_of="2025-11-24"),
        "gpt-4o": _row(2.5, 1.25, 10.0, as_of="2025-11-24"),
    },
    # Reasoning models reject temperature/top_p other than their defaults and take
    # max_completion_tokens. Model-name prefix → is a reasoning model; the longest
    # matching prefix wins, no match is not.
    reasoning_models={"gpt-5": True, "gpt-5-chat": False, "gpt-6": True, "o1": True, "o3": True, "o4": True},
)


def is_reasoning_model(model: str, override: bool | None = None) -> bool:
    """Whether ``model`` takes only the reasoning-model parameters: ``override`` > the table
    (the longest matching name prefix wins; no match is not a reasoning model)."""
    if override is not None:
        return override
    rows = TABLE.reasoning_models
    matches = [name for name in rows if model.startswith(name)]
    return rows[max(matches, key=len)] if matches else False


CACHE_APIS = ("retention", "retention_24h", "options")
# Model-name prefix → how its cache lifetime is asked for (module docstring); the longest
# matching prefix wins, no match is ``retention``.
_CACHE_API: dict[str, str] = {"gpt-5.5": "retention_24h", "gpt-5.6": "options", "gpt-6": "options"}


def cache_api(model: str) -> str:
    """How ``model``'s cache lifetime is asked for: ``retention``, ``retention_24h`` or ``options``."""
    matches = [name for name in _CACHE_API if model.startswith(name)]
    return _CACHE_API[max(matches, key=len)] if matches else "retention"
