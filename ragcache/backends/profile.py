"""A backend's cache economics for one model: :class:`CacheProfile`, resolved from its vendor's table.

The product is an economic argument (a cached token is cheaper and faster), so
every consumer that prices or plans with the cache — the router, the cost
replay, the pricing of answers, the warmer, the bench, the dashboard — reads a
profile and never the backend's kind (docs/architecture.md, invariant 7).

Each vendor folder (``ragcache/backends/<vendor>/table.py``) holds ONE dated
:class:`VendorTable`: its TTL options, defaults and a :class:`ModelRow` per
model, in the vendor's own published units (USD per 1M tokens). Tables are found
through the ``ragcache.vendors`` entry-point group, the way backends are found
through ``ragcache.backends``, so a third-party vendor adds a folder, one
entry-point line per group and its rows. A model resolves to a row exactly or as a
dated snapshot of it (``claude-sonnet-4-5-20250929`` → ``claude-sonnet-4-5``);
a model the table does not know gets the vendor's defaults and is *unpriced*.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import entry_points
from types import MappingProxyType

from ragcache.errors import ConfigError

__all__ = [
    "DEFAULT_PROFILE_MODEL",
    "VENDOR_GROUP",
    "CacheProfile",
    "ModelRow",
    "VendorTable",
    "default_profile",
    "find_vendor",
    "profile_for",
    "resolve_row",
    "vendor_table",
    "vendor_tables",
]

VENDOR_GROUP = "ragcache.vendors"
DEFAULT_PROFILE_MODEL = ("anthropic", "claude-sonnet-4-5", "5m")
# A snapshot suffix: Anthropic's ``-20250929``, OpenAI's ``-2024-07-18``.
_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class ModelRow:
    """One model's published figures, USD per 1M tokens (None: the vendor's default applies).

    ``cache_write``: USD per 1M tokens written, per TTL option (a TTL absent here bills a
    write as plain input). ``storage_1h``: USD per 1M cached token-hours. ``ttls``: the TTL
    options this model accepts, when they differ from the vendor's.
    """

    input: float | None = None
    output: float | None = None
    cached_read: float | None = None
    cache_write: Mapping[str, float] = field(default_factory=dict)
    storage_1h: float = 0.0
    window: int | None = None
    min_cacheable: int | None = None
    ttls: tuple[str, ...] | None = None
    default_ttl: str | None = None
    as_of: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_write", _frozen(self.cache_write))


@dataclass(frozen=True)
class VendorTable:
    """A vendor's dated facts: TTL options (name → seconds, None: until evicted), defaults, rows.

    ``self_hosted``: priced in prefill work, not dollars (reads and writes are multipliers
    of an uncached prefill; the cache is bounded by KV memory under LRU, not a TTL).
    ``max_lookback_blocks``: how many content blocks before a breakpoint the vendor checks
    for an earlier cached prefix (None: every block boundary).
    """

    vendor: str
    as_of: str
    source: str
    ttls: Mapping[str, float | None]
    default_ttl: str
    window: int
    min_cacheable: int
    models: Mapping[str, ModelRow]
    self_hosted: bool = False
    read_multiplier: float | None = None  # self-hosted: a read's prefill work per token
    write_multiplier: float = 1.0  # a write with no price of its own: plain input
    write_multipliers: Mapping[str, float] = field(default_factory=dict)  # per TTL, for unpriced models
    supports_salt: bool = False
    supports_prewarm: bool = False
    supports_diagnostics: bool = False
    max_lookback_blocks: int | None = None
    per_process_cache: bool = False  # the cache lives in the serving process (each worker has its own)
    reasoning_models: Mapping[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ttls", _frozen(self.ttls))
        object.__setattr__(self, "models", _frozen(self.models))
        object.__setattr__(self, "reasoning_models", _frozen(self.reasoning_models))
        object.__setattr__(self, "write_multipliers", _frozen(self.write_multipliers))
        if self.default_ttl not in self.ttls:
            raise ValueError(f"{self.vendor}: default TTL {self.default_ttl!r} is not one of {list(self.ttls)}")


@dataclass(frozen=True)
class CacheProfile:
    """What the cache costs for one backend + model + TTL, relative to an uncached input token.

    ``read_multiplier`` / ``write_multipliers[ttl]``: a cached read / a cache write as a
    multiple of an uncached input token. Prices are USD per 1M tokens (None: unpriced;
    0 for a self-hosted engine, whose cost is hardware). ``storage_per_token_hour``: USD per
    1M cached token-hours (0: not billed). ``ttl``: the TTL option in use.
    """

    vendor: str
    model: str
    as_of: str
    source: str
    context_window: int
    min_cacheable_tokens: int
    ttl_options: Mapping[str, float | None]
    default_ttl: str
    ttl: str
    read_multiplier: float
    write_multipliers: Mapping[str, float]
    input_price: float | None = None
    output_price: float | None = None
    storage_per_token_hour: float = 0.0
    self_hosted: bool = False
    supports_salt: bool = False
    supports_prewarm: bool = False
    supports_diagnostics: bool = False
    max_lookback_blocks: int | None = None
    per_process_cache: bool = False
    priced_model: str | None = None  # the table row the model resolved to (None: unpriced)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ttl_options", _frozen(self.ttl_options))
        object.__setattr__(self, "write_multipliers", _frozen(self.write_multipliers))
        if self.ttl not in self.ttl_options:
            raise ConfigError(
                f"cache TTL {self.ttl!r} is not offered for {self.vendor} model {self.model!r}; "
                f"expected one of {', '.join(self.ttl_options)}"
            )

    # --- what consumers read ------------------------------------------------

    @property
    def write_multiplier(self) -> float:
        """A cache write at the TTL in use, as a multiple of an uncached input token."""
        return self.write_multipliers[self.ttl]

    @property
    def ttl_s(self) -> float | None:
        """Seconds an idle prefix stays cached at the TTL in use (None: until evicted)."""
        return self.ttl_options[self.ttl]

    @property
    def priced(self) -> bool:
        """Whether answers on this model have a dollar price (self-hosted: 0; unknown hosted model: no)."""
        return self.self_hosted or self.input_price is not None

    @property
    def cached_read_price(self) -> float | None:
        """USD per 1M tokens read from the cache."""
        return None if self.input_price is None else round(self.input_price * self.read_multiplier, 9)

    def write_price(self, ttl: str | None = None) -> float | None:
        """USD per 1M tokens written at ``ttl`` (default: the TTL in use)."""
        multiplier = self.write_multipliers[ttl or self.ttl]
        return None if self.input_price is None else round(self.input_price * multiplier, 9)

    def with_ttl(self, ttl: str | None) -> CacheProfile:
        """This profile at another TTL option (None: the model's default); unknown TTLs are a ConfigError."""
        return replace(self, ttl=ttl or self.default_ttl)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (the dashboard and ``eval-router`` report it)."""
        return {
            "vendor": self.vendor,
            "model": self.model,
            "ttl": self.ttl,
            "read_multiplier": self.read_multiplier,
            "write_multiplier": self.write_multiplier,
            "storage_per_token_hour": self.storage_per_token_hour,
            "context_window": self.context_window,
            "min_cacheable_tokens": self.min_cacheable_tokens,
            "self_hosted": self.self_hosted,
            "as_of": self.as_of,
            "source": self.source,
        }


# --- tables -------------------------------------------------------------------


@cache
def vendor_tables() -> Mapping[str, VendorTable]:
    """Every vendor's table, found through the ``ragcache.vendors`` entry-point group."""
    tables: dict[str, VendorTable] = {}
    for ep in sorted(entry_points(group=VENDOR_GROUP), key=lambda e: e.name):
        table = ep.load()
        if not isinstance(table, VendorTable):
            raise ConfigError(f"entry point {ep.value!r} ({VENDOR_GROUP}) is not a VendorTable")
        tables[ep.name] = table
    return MappingProxyType(tables)


def vendor_table(vendor: str) -> VendorTable:
    """The table of ``vendor``; an unknown vendor is a ConfigError naming the known ones."""
    tables = vendor_tables()
    if vendor not in tables:
        raise ConfigError(f"no cache table for vendor {vendor!r}; known: {', '.join(sorted(tables))}")
    return tables[vendor]


def resolve_row(model: str, names: Iterable[str]) -> str | None:
    """The row ``model`` names: itself, or the model it is a dated snapshot of (never a looser prefix)."""
    names = set(names)
    if model in names:
        return model
    base = _DATE_SUFFIX.sub("", model)
    return base if base != model and base in names else None


def find_vendor(model: str) -> str | None:
    """The vendor whose table has a row for ``model`` (None: no table knows it)."""
    for name, table in vendor_tables().items():
        if resolve_row(model, table.models) is not None:
            return name
    return None


def profile_for(
    vendor: str | None,
    model: str,
    ttl: str | None = None,
    *,
    min_cacheable_tokens: int | None = None,
    context_window: int | None = None,
) -> CacheProfile:
    """The profile of ``model`` at ``vendor`` (None: the vendor whose table has the model) and ``ttl``.

    ``min_cacheable_tokens`` / ``context_window`` override the table (a deployment's
    ``backend.options``). An unknown vendor, or no vendor with a row for the model, is a
    ConfigError; a known vendor's unknown model gets the vendor's defaults, unpriced.
    """
    if vendor is None:
        vendor = find_vendor(model)
        if vendor is None:
            known = ", ".join(sorted(m for t in vendor_tables().values() for m in t.models))
            raise ConfigError(f"no vendor table has a row for model {model!r}; known: {known}")
    table = vendor_table(vendor)
    name = resolve_row(model, table.models)
    row = table.models[name] if name is not None else ModelRow()
    ttls = {t: table.ttls[t] for t in row.ttls} if row.ttls else dict(table.ttls)
    default_ttl = row.default_ttl or (table.default_ttl if table.default_ttl in ttls else next(iter(ttls)))
    return CacheProfile(
        vendor=vendor,
        model=model,
        as_of=row.as_of or table.as_of,
        source=table.source,
        context_window=context_window or row.window or table.window,
        min_cacheable_tokens=_pick(min_cacheable_tokens, row.min_cacheable, table.min_cacheable),
        ttl_options=ttls,
        default_ttl=default_ttl,
        ttl=ttl or default_ttl,
        read_multiplier=_read_multiplier(table, row),
        write_multipliers={t: _write_multiplier(table, row, t) for t in ttls},
        input_price=0.0 if table.self_hosted else row.input,
        output_price=0.0 if table.self_hosted else row.output,
        storage_per_token_hour=row.storage_1h,
        self_hosted=table.self_hosted,
        supports_salt=table.supports_salt,
        supports_prewarm=table.supports_prewarm,
        supports_diagnostics=table.supports_diagnostics,
        max_lookback_blocks=table.max_lookback_blocks,
        per_process_cache=table.per_process_cache,
        priced_model=name if (table.self_hosted or row.input is not None) else None,
    )


def _pick(*values: int | None) -> int:
    return next(v for v in values if v is not None)


def _read_multiplier(table: VendorTable, row: ModelRow) -> float:
    if row.input and row.cached_read is not None:
        return round(row.cached_read / row.input, 6)
    if table.read_multiplier is not None:
        return table.read_multiplier
    raise ConfigError(f"{table.vendor}: the table has no read multiplier for unpriced models")


def _write_multiplier(table: VendorTable, row: ModelRow, ttl: str) -> float:
    if row.input and ttl in row.cache_write:
        return round(row.cache_write[ttl] / row.input, 6)
    if row.input is None and ttl in table.write_multipliers:
        return table.write_multipliers[ttl]
    return table.write_multiplier


@cache
def default_profile() -> CacheProfile:
    """claude-sonnet-4-5 at 5 minutes: what a router built without a backend's profile prices with."""
    return profile_for(*DEFAULT_PROFILE_MODEL)
