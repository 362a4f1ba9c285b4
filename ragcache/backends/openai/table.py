"""OpenAI's dated table: prices (USD per 1M tokens), windows, retention options, reasoning models.

Sources and the date each figure was read: docs/vendors.md. Models before GPT-5.6 bill
a cache write as plain input; prompts of 1024 tokens or more are cached automatically.
``in_memory`` retention lasts "5 to 10 minutes of inactivity" (planned with the lower
bound), ``24h`` is extended retention.
"""

from __future__ import annotations

from ragcache.backends.profile import ModelRow, VendorTable

__all__ = ["RESPONSES_MIN_OUTPUT_TOKENS", "TABLE", "is_reasoning_model"]

RESPONSES_MIN_OUTPUT_TOKENS = 16  # the Responses API rejects max_output_tokens below this

_K128 = 128_000
_K400 = 400_000
_M1 = 1_047_576


def _row(input: float, cached: float, output: float, *, window: int, as_of: str) -> ModelRow:
    return ModelRow(input=input, output=output, cached_read=cached, window=window, as_of=as_of)


TABLE = VendorTable(
    vendor="openai",
    as_of="2026-12-07",
    source="https://platform.openai.com/docs/pricing",
    ttls={"in_memory": 300.0, "24h": 86_400.0},
    default_ttl="in_memory",
    window=_K128,
    min_cacheable=1024,
    supports_diagnostics=False,
    read_multiplier=0.1,  # an unpriced model (an OpenAI-compatible server): the gpt-5 family's read discount
    models={
        "gpt-5.5": _row(5.0, 0.5, 30.0, window=_K400, as_of="2026-06-01"),
        "gpt-5.4-nano": _row(0.2, 0.02, 1.25, window=_K400, as_of="2026-06-01"),
        "gpt-5.4-mini": _row(0.75, 0.075, 4.5, window=_K400, as_of="2026-06-01"),
        "gpt-5.4": _row(2.5, 0.25, 15.0, window=_K400, as_of="2026-06-01"),
        "gpt-5.2": _row(1.75, 0.175, 14.0, window=_K400, as_of="2026-01-15"),
        "gpt-5.1": _row(1.25, 0.125, 10.0, window=_K400, as_of="2025-11-24"),
        "gpt-5-nano": _row(0.05, 0.005, 0.4, window=_K400, as_of="2025-11-24"),
        "gpt-5-mini": _row(0.25, 0.025, 2.0, window=_K400, as_of="2025-11-24"),
        "gpt-5": _row(1.25, 0.125, 10.0, window=_K400, as_of="2025-11-24"),
        "gpt-4.1-nano": _row(0.1, 0.025, 0.4, window=_M1, as_of="2025-11-24"),
        "gpt-4.1-mini": _row(0.4, 0.1, 1.6, window=_M1, as_of="2025-11-24"),
        "gpt-4.1": _row(2.0, 0.5, 8.0, window=_M1, as_of="2025-11-24"),
        "gpt-4o-mini": _row(0.15, 0.075, 0.6, window=_K128, as_of="2025-11-24"),
        "gpt-4o": _row(2.5, 1.25, 10.0, window=_K128, as_of="2025-11-24"),
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
