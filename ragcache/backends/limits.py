"""Vendor cache limits, in one dated table: the minimum cacheable prompt per model.

A prefix shorter than its model's minimum is not cached at all, so the router
and the warmer plan with this number (``Capabilities.min_cacheable_tokens``)
and the Anthropic backend places no breakpoint below it. Vendors change these
figures and some models cache only above the documented one (users report
Sonnet 4.6 at 2048), so ``backend.options.min_cacheable_tokens`` overrides the
table and ``ragcache warm`` checks the result.

Rows are model-name prefixes; the longest matching prefix wins, else the
vendor's default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AS_OF",
    "MIN_CACHEABLE",
    "REASONING_AS_OF",
    "REASONING_MODELS",
    "RESPONSES_MIN_OUTPUT_TOKENS",
    "VendorLimits",
    "distinct_minimums",
    "is_reasoning_model",
    "min_cacheable_tokens",
]

AS_OF = "2026-06"  # when the figures below were read from the vendors' prompt-caching docs


@dataclass(frozen=True)
class VendorLimits:
    """A vendor's default minimum and its per-model exceptions (model-name prefix → tokens)."""

    default: int
    by_model: dict[str, int] = field(default_factory=dict)


MIN_CACHEABLE: dict[str, VendorLimits] = {
    # OpenAI: "prompts that are 1024 tokens or longer", every model with prompt caching.
    "openai": VendorLimits(1024),
    # Anthropic: per model family.
    "anthropic": VendorLimits(
        1024,
        {
            "claude-opus-5": 512,
            "claude-fable-5": 512,
            "claude-mythos-5": 512,
            "claude-opus-4-8": 1024,
            "claude-sonnet-5": 1024,
            "claude-sonnet-4-6": 1024,
            "claude-opus-4-7": 2048,
            "claude-opus-4-6": 4096,
            "claude-opus-4-5": 4096,
            "claude-opus-4-1": 1024,
            "claude-opus-4": 1024,
            "claude-sonnet-4-5": 1024,
            "claude-sonnet-4": 1024,
            "claude-3-7-sonnet": 1024,
            "claude-haiku-4-5": 4096,
            "claude-3-5-haiku": 2048,
            "claude-3-haiku": 2048,
        },
    ),
}


def min_cacheable_tokens(vendor: str, model: str, override: int | None = None) -> int:
    """The model's minimum cacheable prefix: ``override`` > the table's row > the vendor default."""
    if override is not None:
        return override
    if vendor not in MIN_CACHEABLE:
        raise KeyError(f"no cache limits for vendor {vendor!r}; known: {', '.join(sorted(MIN_CACHEABLE))}")
    limits = MIN_CACHEABLE[vendor]
    matches = [name for name in limits.by_model if model.startswith(name)]
    return limits.by_model[max(matches, key=len)] if matches else limits.default


def distinct_minimums(vendor: str) -> list[int]:
    """Every minimum the vendor's models have, ascending (what a corpus report checks blocks against)."""
    limits = MIN_CACHEABLE[vendor]
    return sorted({limits.default, *limits.by_model.values()})


REASONING_AS_OF = "2026-06"  # when the rows below were read from OpenAI's model pages

# OpenAI reasoning models reject temperature/top_p other than their defaults and
# take max_completion_tokens (reasoning tokens count against it). Model-name
# prefix → is a reasoning model; the longest matching prefix wins, no match is
# not. ``backend.options.reasoning`` overrides the table for one deployment.
REASONING_MODELS: dict[str, bool] = {
    "gpt-5": True,
    "gpt-5-chat": False,  # the chat-tuned gpt-5 snapshots take temperature
    "o1": True,
    "o3": True,
    "o4": True,
}

RESPONSES_MIN_OUTPUT_TOKENS = 16  # the Responses API rejects max_output_tokens below this


def is_reasoning_model(model: str, override: bool | None = None) -> bool:
    """Whether ``model`` takes only the reasoning-model parameters: ``override`` > the table."""
    if override is not None:
        return override
    matches = [name for name in REASONING_MODELS if model.startswith(name)]
    return REASONING_MODELS[max(matches, key=len)] if matches else False
