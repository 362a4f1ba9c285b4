"""What a request cost, and what it would have cost without the cache.

Prices come from each vendor's dated table (``ragcache/backends/<vendor>/table.py``,
read through :mod:`ragcache.backends.profile`; USD per 1M tokens). A model name
resolves to a row only exactly or as a dated snapshot of it
(``claude-sonnet-4-5-20250929`` → ``claude-sonnet-4-5``, ``gpt-4o-mini-2024-07-18``
→ ``gpt-4o-mini``): never by a looser prefix, so a model no table knows
(``claude-opus-4-9``) is *unpriced* rather than billed as a cousin. A backend
whose profile is self-hosted costs 0 here: its cost is hardware, not tokens.
``load_prices(path)`` reads a JSON table of the same fields for a private price list.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragcache.backends.base import CacheUsage
from ragcache.backends.profile import CacheProfile, profile_for, resolve_row, vendor_table, vendor_tables
from ragcache.errors import ConfigError

if TYPE_CHECKING:
    from ragcache.config import BackendConfig

__all__ = [
    "Cost",
    "ModelPrice",
    "cost_at",
    "cost_of",
    "load_prices",
    "price_for",
    "price_of",
    "price_usage",
    "resolve_model",
]

log = logging.getLogger("ragcache.pricing")

_PER = 1_000_000


@dataclass(frozen=True)
class ModelPrice:
    """USD per 1M tokens for one model."""

    model: str
    vendor: str
    as_of: str
    input: float
    cached_read: float
    output: float
    cache_write_5m: float  # a write at the model's default TTL
    cache_write_1h: float  # a write at the 1-hour TTL (Anthropic's ``ephemeral_1h``), else the default's
    cache_storage_1h: float = 0.0  # per 1M token-hours of explicit cache storage (Gemini)
    cache_writes: Mapping[str, float] = field(default_factory=dict)  # TTL option → write price
    default_ttl: str = "5m"

    def write_price(self, ttl: str | None = None) -> float:
        """USD per 1M tokens written at ``ttl`` (default: the model's default TTL)."""
        return self.cache_writes.get(ttl or self.default_ttl, self.cache_write_5m)


@dataclass(frozen=True)
class Cost:
    """The cost of one request, and the same tokens with no cache at all (``uncached_usd``)."""

    usd: float
    uncached_usd: float
    model: str = ""

    @property
    def saved_usd(self) -> float:
        """What the cache saved; negative while a cache write has not been read yet."""
        return self.uncached_usd - self.usd

    @property
    def saved_ratio(self) -> float:
        return self.saved_usd / self.uncached_usd if self.uncached_usd else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "usd": round(self.usd, 8),
            "uncached_usd": round(self.uncached_usd, 8),
            "saved_usd": round(self.saved_usd, 8),
            "model": self.model,
        }


def _price(model: str, entry: dict[str, Any], where: str) -> ModelPrice:
    try:
        return ModelPrice(
            model=model,
            vendor=str(entry["vendor"]),
            as_of=str(entry["as_of"]),
            input=float(entry["input"]),
            cached_read=float(entry["cached_read"]),
            output=float(entry["output"]),
            # OpenAI bills a cache write at the plain input price.
            cache_write_5m=float(entry.get("cache_write_5m", entry["input"])),
            cache_write_1h=float(entry.get("cache_write_1h", entry.get("cache_write_5m", entry["input"]))),
            cache_storage_1h=float(entry.get("cache_storage_1h", 0.0)),
            cache_writes={
                ttl: float(entry[f"cache_write_{ttl}"]) for ttl in ("5m", "1h") if f"cache_write_{ttl}" in entry
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: model {model!r}: bad or missing price field ({exc})") from exc


def load_prices(path: str | Path | None = None) -> dict[str, ModelPrice]:
    """Read a price table: a JSON file of ``models`` (default: every vendor table's priced rows)."""
    if path is None:
        return dict(_packaged())
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read price table ({exc})") from exc
    return {name: _price(name, entry, where) for name, entry in data.get("models", {}).items()}


@cache
def _packaged() -> dict[str, ModelPrice]:
    """Every priced row of every vendor table, at the model's default TTL."""
    prices: dict[str, ModelPrice] = {}
    for vendor, table in vendor_tables().items():
        for name, row in table.models.items():
            if row.input is None:
                continue
            prices[name] = price_of(profile_for(vendor, name))
    return prices


def price_of(profile: CacheProfile) -> ModelPrice:
    """``profile``'s prices as a :class:`ModelPrice` (0 for a self-hosted or unpriced model)."""
    writes = {ttl: profile.write_price(ttl) or 0.0 for ttl in profile.ttl_options}
    default = writes[profile.ttl]
    return ModelPrice(
        model=profile.priced_model or profile.model,
        vendor=profile.vendor,
        as_of=profile.as_of,
        input=profile.input_price or 0.0,
        cached_read=profile.cached_read_price or 0.0,
        output=profile.output_price or 0.0,
        cache_write_5m=default,
        cache_write_1h=writes.get("1h", default),
        cache_storage_1h=profile.storage_per_token_hour,
        cache_writes=writes,
        default_ttl=profile.ttl,
    )


def resolve_model(model: str, names: Any) -> str | None:
    """The table entry ``model`` names: itself, or the model it is a dated snapshot of."""
    return resolve_row(model, names)


def price_for(model: str, prices: dict[str, ModelPrice] | None = None) -> ModelPrice | None:
    """The list price of ``model`` (exact name or dated snapshot); None if the table does not know it."""
    table = _packaged() if prices is None else prices
    name = resolve_model(model, table)
    return table[name] if name is not None else None


def cost_at(usage: CacheUsage, price: ModelPrice) -> Cost:
    """USD for ``usage`` at ``price``, and for the same tokens with no cache. Writes are priced at their
    TTL where the vendor reported the split (``usage.writes_by_ttl``), else at the price's default TTL."""
    writes = usage.writes_by_ttl or {price.default_ttl: usage.cache_write_tokens}
    fresh = max(usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
    usd = (
        fresh * price.input
        + usage.cached_tokens * price.cached_read
        + sum(tokens * price.write_price(ttl) for ttl, tokens in writes.items())
        + usage.output_tokens * price.output
        + float(usage.raw.get("cache_storage_token_hours") or 0.0) * price.cache_storage_1h
    ) / _PER
    uncached = (usage.input_tokens * price.input + usage.output_tokens * price.output) / _PER
    return Cost(usd, uncached, price.model)


def cost_of(usage: CacheUsage, model: str, prices: dict[str, ModelPrice] | None = None) -> Cost | None:
    """USD for ``usage`` at ``model``'s list price, and for the same tokens uncached (None: unpriced)."""
    price = price_for(model, prices)
    return cost_at(usage, price) if price is not None else None


_warned: set[str] = set()
_warned_lock = threading.Lock()


def price_usage(
    backend: BackendConfig, usage: CacheUsage, reported_model: str = "", profile: CacheProfile | None = None
) -> Cost | None:
    """The cost of one answer on the configured backend; None for a hosted model with no price.

    The model is the configured one, or (none configured) the one the engine
    reported; ``profile`` (the backend's) prices writes at the TTL it uses. An
    unpriced model is logged once per process, not per answer.
    """
    model = backend.model or reported_model
    if profile.self_hosted if profile is not None else _self_hosted(backend.kind):
        return Cost(0.0, 0.0, model)
    if profile is not None and profile.priced_model is not None and resolve_row(model, (profile.priced_model,)):
        return cost_at(usage, price_of(profile))
    cost = cost_of(usage, model)
    if cost is None:
        with _warned_lock:
            first = model not in _warned
            _warned.add(model)
        if first:
            log.warning(
                "no price for model %r (backend %s) in its vendor table (ragcache/backends/<vendor>/table.py): "
                "its answers are unpriced "
                "(cost null); add the model there to price them",
                model,
                backend.kind,
            )
    return cost


def _self_hosted(kind: str) -> bool:
    """Whether the backend ``kind``'s vendor table declares it self-hosted (a kind with no table: hosted)."""
    try:
        return vendor_table(kind).self_hosted
    except ConfigError:
        return False
