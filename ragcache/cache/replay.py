"""Cost replay: what a stream of prompts costs on a vendor's prompt cache, in arrival order.

Each request is a stable prefix (a sequence of blocks, each with its token count)
and an uncached tail. The replay keeps the vendor's cache as a set of cached
prefixes with expiry times and charges every request with the vendor's rules:

- the **hit** is the longest leading block sequence shared with a live cached
  prefix (block boundaries are where breakpoints sit), read at ``cached_read``;
  where the vendor looks back only so many content blocks from the breakpoint at
  the end of the stable prefix (``CacheProfile.max_lookback_blocks``: Anthropic's
  20), a shared prefix further back is not found;
- the rest of the stable prefix is **written** at the TTL's write price, and the
  tail is plain input;
- nothing is cached or read when the stable prefix (or the shared part) is
  below the model's minimum cacheable tokens;
- a hit or a write sets the expiry of the prefixes involved to now + TTL;
- where the vendor bills **storage** (Gemini's explicit caches, per token-hour),
  each cached prefix is billed from its write to its last expiry;
- a self-hosted engine has no TTL and no token price: the replay counts prefill
  work (an uncached token is 1, a read and a write the profile's multipliers, per
  1M tokens) and keeps every prefix (the KV memory bound is not modelled).

Every figure comes from the model's :class:`~ragcache.backends.profile.CacheProfile`
(docs/architecture.md, invariant 7).

Question and output tokens are the same for every strategy over the same
questions, so callers usually leave them out. Pure and deterministic: no clock,
no I/O beyond reading the price table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ragcache.backends.profile import CacheProfile, profile_for, vendor_tables
from ragcache.errors import ConfigError

__all__ = [
    "CacheRules",
    "ReplayRequest",
    "ReplayResult",
    "arrivals",
    "replay",
    "rules_for",
    "rules_from",
    "stable_blocks",
]

_PER = 1_000_000
_PLANNING_DAY_S = 86_400.0  # a prefix with no TTL, for the router's questions-per-lifetime: a day of traffic


@dataclass(frozen=True)
class CacheRules:
    """One model's cache prices (USD per 1M tokens) and mechanics."""

    model: str
    vendor: str
    input: float
    cached_read: float
    cache_write: float
    ttl_s: float  # inf: no TTL (a self-hosted engine's LRU)
    min_cacheable_tokens: int = 0
    storage_per_hour: float = 0.0  # USD per 1M cached tokens per hour (0: not billed)
    max_lookback_blocks: int | None = None
    profile: CacheProfile | None = field(default=None, compare=False)

    @property
    def planning_ttl_s(self) -> float:
        """The TTL the router plans demand with: the TTL, or a day for a cache with none."""
        return min(self.ttl_s, _PLANNING_DAY_S)


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


def rules_for(model: str, ttl: str | None = None, min_cacheable_tokens: int | None = None) -> CacheRules:
    """The rules of ``model`` (exact name or dated snapshot, found in its vendor's table) at ``ttl``
    (default: the model's). ``vendor:model`` names the vendor (``vllm:Qwen/Qwen3-8B``), and a
    self-hosted vendor's name alone (``vllm``, ``local``) its engine; a model no table prices is a
    ConfigError."""
    vendor, _, name = model.rpartition(":") if ":" in model else (None, "", model)
    if vendor is None and name in vendor_tables() and vendor_tables()[name].self_hosted:
        vendor, name = name, ""
    profile = profile_for(vendor, name, ttl, min_cacheable_tokens=min_cacheable_tokens)
    return rules_from(profile)


def rules_from(profile: CacheProfile) -> CacheRules:
    """The replay's rules for ``profile``: USD per 1M tokens, or prefill work for a self-hosted engine."""
    if profile.self_hosted:
        base = 1.0  # an uncached token's prefill
    elif profile.input_price is None:
        raise ConfigError(f"no price for {profile.vendor} model {profile.model!r} in its vendor table")
    else:
        base = profile.input_price
    ttl_s = profile.ttl_s
    return CacheRules(
        model=profile.priced_model or profile.model,
        vendor=profile.vendor,
        input=base,
        cached_read=round(base * profile.read_multiplier, 9),
        cache_write=round(base * profile.write_multiplier, 9),
        ttl_s=float("inf") if ttl_s is None else ttl_s,
        min_cacheable_tokens=profile.min_cacheable_tokens,
        storage_per_hour=profile.storage_per_token_hour,
        max_lookback_blocks=profile.max_lookback_blocks,
        profile=profile,
    )


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
            lookback = self.rules.max_lookback_blocks
            if lookback is not None and len(ids) - n > lookback:
                continue  # the breakpoint at the prefix's end does not look back that far
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
        if math.isfinite(entry.expires_s):  # a cache with no TTL bills no storage
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
