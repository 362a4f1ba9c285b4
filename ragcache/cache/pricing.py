"""What a request cost, and what it would have cost without the cache.

Prices live in ``prices.json`` beside this module (USD per 1M tokens, each
model with the date its figures were taken from the vendor's page); model names
match by longest prefix, so ``claude-sonnet-4-5-20250929`` finds
``claude-sonnet-4-5``. Self-hosted engines (``local``, ``vllm``) cost 0 here:
their cost is hardware, not tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragcache.backends.base import CacheUsage
from ragcache.errors import ConfigError

if TYPE_CHECKING:
    from ragcache.config import BackendConfig

__all__ = ["SELF_HOSTED", "Cost", "ModelPrice", "cost_of", "estimate_cost", "load_prices", "price_for"]

SELF_HOSTED = frozenset({"local", "vllm"})
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
    cache_write_5m: float
    cache_write_1h: float
    cache_storage_1h: float = 0.0  # per 1M token-hours of explicit cache storage (Gemini)


@dataclass(frozen=True)
class Cost:
    """The cost of one request and the same request with no cache at all."""

    usd: float
    no_cache_usd: float
    model: str = ""
    priced: bool = True

    @property
    def saving_usd(self) -> float:
        return self.no_cache_usd - self.usd

    @property
    def saving_ratio(self) -> float:
        return self.saving_usd / self.no_cache_usd if self.no_cache_usd else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "usd": round(self.usd, 8),
            "no_cache_usd": round(self.no_cache_usd, 8),
            "saving_usd": round(self.saving_usd, 8),
            "model": self.model,
            "priced": self.priced,
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
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: model {model!r}: bad or missing price field ({exc})") from exc


def load_prices(path: str | Path | None = None) -> dict[str, ModelPrice]:
    """Read a price table (default: the packaged ``prices.json``)."""
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
    text = resources.files("ragcache.cache").joinpath("prices.json").read_text(encoding="utf-8")
    return {name: _price(name, entry, "prices.json") for name, entry in json.loads(text)["models"].items()}


def price_for(model: str, prices: dict[str, ModelPrice] | None = None) -> ModelPrice | None:
    """The entry whose name is the longest prefix of ``model`` (None if unknown)."""
    table = _packaged() if prices is None else prices
    matches = [name for name in table if model.startswith(name)]
    return table[max(matches, key=len)] if matches else None


def _write_split(usage: CacheUsage) -> tuple[int, int]:
    """(5m, 1h) cache-write tokens; Anthropic reports the split in ``cache_creation``."""
    split = usage.raw.get("cache_creation") or {}
    one_hour = int(split.get("ephemeral_1h_input_tokens") or 0)
    five_min = int(split.get("ephemeral_5m_input_tokens") or 0)
    if one_hour + five_min != usage.cache_write_tokens:
        return usage.cache_write_tokens, 0
    return five_min, one_hour


def cost_of(
    usage: CacheUsage, model: str, backend: str | None = None, prices: dict[str, ModelPrice] | None = None
) -> Cost:
    """USD for ``usage`` on ``model``, and the no-cache figure for the same tokens.

    Unknown hosted models come back with ``priced=False`` and zero cost rather
    than a guess.
    """
    if backend in SELF_HOSTED:
        return Cost(0.0, 0.0, model)
    price = price_for(model, prices)
    if price is None:
        return Cost(0.0, 0.0, model, priced=False)
    write_5m, write_1h = _write_split(usage)
    fresh = max(usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
    usd = (
        fresh * price.input
        + usage.cached_tokens * price.cached_read
        + write_5m * price.cache_write_5m
        + write_1h * price.cache_write_1h
        + usage.output_tokens * price.output
        + float(usage.raw.get("cache_storage_token_hours") or 0.0) * price.cache_storage_1h
    ) / _PER
    no_cache = (usage.input_tokens * price.input + usage.output_tokens * price.output) / _PER
    return Cost(usd, no_cache, price.model)


def estimate_cost(backend: BackendConfig, usage: CacheUsage) -> float | None:
    """USD for one answer on the configured backend (None: a hosted model with no price)."""
    from ragcache.backends.anthropic import DEFAULT_MODEL as ANTHROPIC_DEFAULT
    from ragcache.backends.gemini import DEFAULT_MODEL as GEMINI_DEFAULT
    from ragcache.backends.openai import DEFAULT_MODEL as OPENAI_DEFAULT

    defaults = {"openai": OPENAI_DEFAULT, "anthropic": ANTHROPIC_DEFAULT, "gemini": GEMINI_DEFAULT}
    model = backend.model or defaults.get(backend.kind, "")
    cost = cost_of(usage, model, backend.kind)
    return cost.usd if cost.priced else None
