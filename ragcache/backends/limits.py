"""The minimum cacheable prompt per hosted vendor and model: a view of the vendor tables.

A prefix shorter than its model's minimum is not cached at all, so the router and
the warmer plan with this number (``Capabilities.min_cacheable_tokens``) and the
Anthropic backend places no breakpoint below it. The figures live in each vendor's
dated table (``ragcache/backends/<vendor>/table.py``, read through
:mod:`ragcache.backends.profile`); ``backend.options.min_cacheable_tokens``
overrides them and ``ragcache warm`` checks the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ragcache.backends.profile import profile_for, vendor_tables

__all__ = ["MIN_CACHEABLE", "VendorLimits", "distinct_minimums", "min_cacheable_tokens"]


@dataclass(frozen=True)
class VendorLimits:
    """A vendor's default minimum and its per-model rows (model name → tokens)."""

    default: int
    by_model: dict[str, int] = field(default_factory=dict)


def _hosted() -> dict[str, VendorLimits]:
    return {
        vendor: VendorLimits(
            table.min_cacheable,
            {name: row.min_cacheable for name, row in table.models.items() if row.min_cacheable is not None},
        )
        for vendor, table in vendor_tables().items()
        if not table.self_hosted
    }


MIN_CACHEABLE: dict[str, VendorLimits] = _hosted()


def min_cacheable_tokens(vendor: str, model: str, override: int | None = None) -> int:
    """The model's minimum cacheable prefix: ``override`` > its row (exact or dated snapshot) > the default."""
    return profile_for(vendor, model, min_cacheable_tokens=override).min_cacheable_tokens


def distinct_minimums(vendor: str) -> list[int]:
    """Every minimum the vendor's models have, ascending (what a corpus report checks blocks against)."""
    limits = MIN_CACHEABLE[vendor]
    return sorted({limits.default, *limits.by_model.values()})
