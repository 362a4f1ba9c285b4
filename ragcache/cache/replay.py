"""Cost replay: what a stream of prompts costs on a vendor's prompt cache, in arrival order.

Each request is a stable prefix (a sequence of blocks, each with its token count)
and an uncached tail. The replay keeps the vendor's cache as a set of cached
prefixes with expiry times and charges every request with the vendor's rules:

- the **hit** is the longest leading block sequence shared with a live cached
  prefix (block boundaries are where breakpoints sit), read at ``cached_read``;
- the rest of the stable prefix is **written** at the TTL's write price
  (Anthropic 1.25x input for 5 minutes, 2x for an hour; OpenAI and Gemini bill a
  write as plain input), and the tail is plain input;
- nothing is cached or read when the stable prefix (or the shared part) is
  below the model's minimum cacheable tokens;
- a hit or a write sets the expiry of the prefixes involved to now + TTL;
- where the vendor bills **storage** (Gemini's explicit caches, per token-hour),
  each cached prefix is billed from its write to its last expiry.

Question and output tokens are the same for every strategy over the same
questions, so callers usually leave them out. Pure and deterministic: no clock,
no I/O beyond reading the price table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

from ragcache.errors import ConfigError

__all__ = ["TTLS", "CacheRules", "ReplayRequest", "ReplayResult", "arrivals", "replay", "rules_for", "stable_blocks"]

Ttl = Literal["5m", "1h"]
TTLS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}
_PER = 1_000_000
# Gemini's explicit caches default to one hour and bill writes as plain input.
_VENDOR_TTL: dict[str, Ttl] = {"anthropic": "5m", "openai": "5m", "gemini": "1h"}
_MIN_CACHEABLE = {"gemini": 1024}  # vendors without a row in ragcache.backends.limits


@dataclass(frozen=True)
class CacheRules:
    """One model's cache prices (USD per 1M tokens) and mechanics."""

    model: str
    vendor: str
    input: float
    cached_read: float
    cache_write: float
    ttl_s: float
    min_cacheable_tokens: int = 0
    storage_per_hour: float = 0.0  # USD per 1M cached tokens per hour (0: not billed)


@dataclass(frozen=True)
class ReplayRequest:
    """One prompt: arrival time (s), stable blocks as ``(block id, tokens)``, uncached tail tokens."""

    time_s: float
    blocks: tuple[tuple[str, int], ...]
    tail_tokens: int = 0


@dataclass
class ReplayResult:
    """Token breakdown and dollars of a replay."""

    requests: int = 0
    input_tokens: int = 0
    cached_read_tokens: int = 0
    cache_write_tokens: int = 0
    uncached_tokens: int = 0
    storage_token_hours: float = 0.0
    usd: float = 0.0
    storage_usd: float = 0.0
    no_cache_usd: float = 0.0
    prefixes_written: int = 0

    @property
    def usd_per_1k(self) -> float:
        """Dollars per 1,000 requests (storage included)."""
        return 1000.0 * self.usd / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "cached_read_tokens": self.cached_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "uncached_tokens": self.uncached_tokens,
            "storage_token_hours": round(self.storage_token_hours, 3),
            "usd": round(self.usd, 6),
            "storage_usd": round(self.storage_usd, 6),
            "no_cache_usd": round(self.no_cache_usd, 6),
            "usd_per_1k": round(self.usd_per_1k, 6),
            "prefixes_written": self.prefixes_written,
        }


@cache
def _price_entries() -> dict[str, dict]:
    text = resources.files("ragcache.cache").joinpath("prices.json").read_text(encoding="utf-8")
    return dict(json.loads(text)["models"])


def rules_for(model: str, ttl: Ttl | None = None, min_cacheable_tokens: int | None = None) -> CacheRules:
    """The rules for ``model`` (longest-prefix match in prices.json); unknown models are a ConfigError."""
    entries = _price_entries()
    matches = [name for name in entries if model.startswith(name)]
    if not matches:
        raise ConfigError(f"no price for model {model!r} in ragcache/cache/prices.json; known: {', '.join(entries)}")
    name = max(matches, key=len)
    entry = entries[name]
    vendor = str(entry["vendor"])
    ttl = ttl or _VENDOR_TTL.get(vendor, "5m")
    if ttl not in TTLS:
        raise ConfigError(f"cache TTL {ttl!r}: expected one of {', '.join(TTLS)}")
    write = entry.get(f"cache_write_{ttl}", entry.get("cache_write_5m", entry["input"]))
    storage = entry.get("cache_storage_per_hour", entry.get("storage_per_hour", 0.0))
    return CacheRules(
        model=name,
        vendor=vendor,
        input=float(entry["input"]),
        cached_read=float(entry["cached_read"]),
        cache_write=float(write),
        ttl_s=TTLS[ttl],
        min_cacheable_tokens=_min_cacheable(vendor, model) if min_cacheable_tokens is None else min_cacheable_tokens,
        storage_per_hour=float(storage),
    )


def _min_cacheable(vendor: str, model: str) -> int:
    """The dated per-model table of ragcache.backends.limits, else this module's vendor default."""
    from ragcache.backends.limits import MIN_CACHEABLE, min_cacheable_tokens

    if vendor in MIN_CACHEABLE:
        return int(min_cacheable_tokens(vendor, model))
    return _MIN_CACHEABLE.get(vendor, 0)


def arrivals(count: int, rate_per_min: float) -> list[float]:
    """Evenly spaced arrival times (s) for ``count`` requests at ``rate_per_min``."""
    if rate_per_min <= 0:
        raise ValueError(f"arrival rate must be positive, got {rate_per_min}")
    return [i * 60.0 / rate_per_min for i in range(count)]


@dataclass
class _Entry:
    tokens: int
    written_s: float
    expires_s: float


@dataclass
class _Cache:
    rules: CacheRules
    entries: dict[tuple[str, ...], _Entry] = field(default_factory=dict)
    token_seconds: float = 0.0

    def lookup(self, now: float, ids: tuple[str, ...], cumulative: list[int]) -> tuple[int, tuple[str, ...] | None]:
        """(shared leading blocks, the live entry sharing them), expired entries retired first."""
        for key in [k for k, e in self.entries.items() if e.expires_s <= now]:
            self._retire(key)
        best, owner = 0, None
        for key in sorted(self.entries):  # sorted: ties resolve the same way on every run
            n = _shared(key, ids)
            if n > best and cumulative[n] >= self.rules.min_cacheable_tokens:
                best, owner = n, key
        return best, owner

    def touch(self, now: float, key: tuple[str, ...], tokens: int) -> bool:
        """Cache (or refresh) ``key``; True when it was a new write."""
        entry = self.entries.get(key)
        if entry is None:
            self.entries[key] = _Entry(tokens, now, now + self.rules.ttl_s)
            return True
        entry.expires_s = now + self.rules.ttl_s
        return False

    def close(self) -> None:
        for key in list(self.entries):
            self._retire(key)

    def _retire(self, key: tuple[str, ...]) -> None:
        entry = self.entries.pop(key)
        self.token_seconds += entry.tokens * (entry.expires_s - entry.written_s)


def _shared(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def replay(requests: Iterable[ReplayRequest], rules: CacheRules) -> ReplayResult:
    """Charge ``requests`` (in the order given: arrival order) against ``rules``."""
    cache_state = _Cache(rules)
    out = ReplayResult()
    last = float("-inf")
    for request in requests:
        if request.time_s < last:
            raise ValueError(f"requests must be in arrival order: {request.time_s} after {last}")
        last = request.time_s
        _charge(cache_state, request, out)
    cache_state.close()
    out.storage_token_hours = cache_state.token_seconds / 3600.0
    out.storage_usd = out.storage_token_hours * rules.storage_per_hour / _PER
    out.usd = (
        out.uncached_tokens * rules.input
        + out.cached_read_tokens * rules.cached_read
        + out.cache_write_tokens * rules.cache_write
    ) / _PER + out.storage_usd
    out.no_cache_usd = out.input_tokens * rules.input / _PER
    return out


def _charge(state: _Cache, request: ReplayRequest, out: ReplayResult) -> None:
    ids = tuple(block for block, _ in request.blocks)
    cumulative = _cumulative(tok for _, tok in request.blocks)
    stable = cumulative[-1]
    out.requests += 1
    out.input_tokens += stable + request.tail_tokens
    out.uncached_tokens += request.tail_tokens
    if stable < state.rules.min_cacheable_tokens or not ids:
        out.uncached_tokens += stable
        return
    shared, owner = state.lookup(request.time_s, ids, cumulative)
    hit = cumulative[shared]
    out.cached_read_tokens += hit
    out.cache_write_tokens += stable - hit
    if owner is not None and owner != ids:
        state.touch(request.time_s, owner, 0)  # reading a prefix refreshes it
    out.prefixes_written += state.touch(request.time_s, ids, stable)


def _cumulative(tokens: Iterable[int]) -> list[int]:
    out = [0]
    for t in tokens:
        if t < 0:
            raise ValueError(f"negative token count {t}")
        out.append(out[-1] + t)
    return out


def stable_blocks(ids: Sequence[str], tokens: Sequence[int]) -> tuple[tuple[str, int], ...]:
    """``(id, tokens)`` pairs for a :class:`ReplayRequest` (lengths must match)."""
    if len(ids) != len(tokens):
        raise ValueError(f"{len(ids)} block ids but {len(tokens)} token counts")
    return tuple(zip(ids, (int(t) for t in tokens), strict=True))
