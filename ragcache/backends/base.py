"""The backend protocol: one required method, declared capabilities.

Every engine (local transformers, vLLM, OpenAI, Anthropic) implements
``generate``; ``stream``, ``warm``, ``count_tokens`` and ``prefix_tokens`` have
defaults that either fall back sensibly or raise :class:`UnsupportedError`
saying so. A backend declares what the router and warmer plan with in
:class:`Capabilities`, and its ``backend.options`` in a pydantic ``Options``
model (unknown keys are errors naming the key and the config file). Vendor
usage is normalised into one :class:`CacheUsage` (docs/architecture.md, invariant 5).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ragcache.backends.profile import CacheProfile, default_profile, profile_for, vendor_tables
from ragcache.config import format_validation_error
from ragcache.errors import ConfigError, UnsupportedError
from ragcache.prompt import Prompt

if TYPE_CHECKING:
    from ragcache.config import BackendConfig, CacheConfig

__all__ = [
    "Backend",
    "BackendOptions",
    "CacheUsage",
    "Capabilities",
    "Generation",
    "GenerationOptions",
    "available_backends",
    "create_backend",
    "parse_options",
    "register_backend",
]


@dataclass(frozen=True)
class CacheUsage:
    """What the cache did for one request.

    ``input_tokens`` counts every prompt token, cached ones included (OpenAI's
    convention; Anthropic's ``input_tokens`` excludes them and is converted).
    ``raw`` keeps the engine's or vendor's usage exactly as received.
    """

    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    # cache-write tokens per TTL option where the vendor reports the split (Anthropic 5m/1h,
    # OpenAI 30m/12h); empty: every write was at the backend profile's TTL
    writes_by_ttl: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def uncached_tokens(self) -> int:
        return max(self.input_tokens - self.cached_tokens, 0)

    @property
    def cached_ratio(self) -> float:
        return self.cached_tokens / self.input_tokens if self.input_tokens else 0.0

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the router and warmer plan with these numbers.

    ``cache_block_tokens``: the cache stores prefixes in blocks of this many
    tokens (a partial last block is not cached). ``exact_prefix_tokens``: the
    backend's :meth:`Backend.prefix_tokens` counts with the engine's own
    tokenizer (else the warmer estimates from usage). ``max_breakpoints``:
    explicit cache breakpoints a request may carry (None: automatic caching).
    ``ttl_s``: how long an idle prefix stays cached (None: until evicted).
    ``reads_refresh_ttl``: a request that reads the cache restarts its TTL
    (False for Gemini's explicit caches, which only ``warm`` extends).
    """

    context_window: int
    min_cacheable_tokens: int = 0
    cache_block_tokens: int = 1
    exact_prefix_tokens: bool = False
    max_breakpoints: int | None = None
    ttl_s: float | None = None
    can_warm: bool = True
    reads_refresh_ttl: bool = True


class BackendOptions(BaseModel):
    """Base of every backend's ``backend.options`` model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=BackendOptions)


def parse_options(model: type[OptionsT], config: BackendConfig) -> OptionsT:
    """Validate ``config.options`` against ``model``; errors name the key and the config file."""
    try:
        return model.model_validate(config.options)
    except ValidationError as exc:
        where = str(config.source) if config.source is not None else "config"
        lines = format_validation_error(exc, where).splitlines()
        lines = [line.replace(f"{where}: ", f"{where}: backend.options.", 1) for line in lines]
        raise ConfigError("\n".join(lines)) from exc


@dataclass(frozen=True)
class GenerationOptions:
    """Per-request decoding options."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    cache_salt: str | None = None
    session_id: str | None = None  # spreads a hot prefix over cache keys per session (openai)


@dataclass(frozen=True)
class Generation:
    """A finished answer from the engine, with usage and timings."""

    text: str
    usage: CacheUsage
    finish_reason: str = "stop"
    ttft_s: float = 0.0
    latency_s: float = 0.0
    model: str = ""


class Backend(ABC):
    """Base class for engines. Subclasses set ``name`` and implement ``generate``."""

    name: ClassVar[str] = "base"
    needs_key: ClassVar[bool] = False
    key_env_var: ClassVar[str | None] = None
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    cache_ttl: str | None = None  # the TTL option of the profile (None: the vendor table's default)

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """Context window, minimum cacheable size, TTL and breakpoint limits."""

    @property
    def profile(self) -> CacheProfile:
        """This backend's cache economics for its model, from its vendor's dated table (the table
        registered under the backend's ``name``); every price and plan reads it, never the kind
        (docs/architecture.md, invariant 7). Backends with a TTL option override it."""
        caps = self.capabilities
        model = str(getattr(self, "model", "") or "")
        if self.name not in vendor_tables():  # a backend with no table prices as the router's default
            default = default_profile()
            return replace(
                default,
                vendor=self.name,
                model=model,
                context_window=caps.context_window,
                input_price=None,
                output_price=None,
                priced_model=None,
            )
        return profile_for(
            self.name,
            model,
            self.cache_ttl,
            min_cacheable_tokens=caps.min_cacheable_tokens,
            context_window=caps.context_window,
        )

    @abstractmethod
    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        """Answer ``prompt``; the one method every backend must implement."""

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Iterator[str | Generation]:
        """Yield text deltas, then the final :class:`Generation` (default: one delta)."""
        generation = self.generate(prompt, options)
        yield generation.text
        yield generation

    def warm(self, prompt: Prompt) -> CacheUsage:
        """Materialise ``prompt``'s stable prefix in the cache without answering."""
        raise UnsupportedError(f"backend {self.name!r} cannot warm a prefix")

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` with this backend's tokenizer."""
        raise UnsupportedError(f"backend {self.name!r} cannot count tokens")

    def prefix_tokens(self, prompt: Prompt) -> int:
        """Exact tokens of ``prompt``'s stable prefix as the engine caches it
        (supported when ``capabilities.exact_prefix_tokens``)."""
        raise UnsupportedError(f"backend {self.name!r} cannot count prefix tokens")

    def retire(self, live_fingerprints: Iterable[str]) -> list[str]:
        """Delete this backend's caches of prefixes not in ``live_fingerprints`` (an earlier build's,
        billed until they expire); the deleted caches' names. Default: none to delete (caches that
        expire or are evicted on their own), and ``live_fingerprints`` is not consumed."""
        return []

    def queue_depth(self) -> int:
        """Requests waiting for the engine (``ragcache_queue_depth``); a batching engine overrides it."""
        return 0

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release connections, models and threads."""


def timed_generation(
    text: str, usage: CacheUsage, started: float, first_token_at: float | None, **kw: Any
) -> Generation:
    """Build a :class:`Generation` from ``time.perf_counter()`` marks."""
    now = time.perf_counter()
    ttft = (first_token_at if first_token_at is not None else now) - started
    return Generation(text=text, usage=usage, ttft_s=ttft, latency_s=now - started, **kw)


BackendFactory = Callable[["BackendConfig", "CacheConfig"], Backend]
_REGISTRY: dict[str, BackendFactory] = {}
BACKEND_GROUP = "ragcache.backends"  # built-in backends register here too (pyproject.toml)


def register_backend(name: str, factory: BackendFactory) -> None:
    """Register a backend factory under ``name`` in this process (a package uses the
    ``ragcache.backends`` entry-point group, as the built-in backends do)."""
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    names = set(_REGISTRY) | {ep.name for ep in entry_points(group=BACKEND_GROUP)}
    return sorted(names)


def create_backend(config: BackendConfig, cache: CacheConfig) -> Backend:
    """Instantiate the backend named by ``config.kind``."""
    kind = config.kind
    if kind in _REGISTRY:
        return _REGISTRY[kind](config, cache)
    for ep in entry_points(group=BACKEND_GROUP):
        if ep.name == kind:
            return ep.load()(config, cache)
    raise ConfigError(f"unknown backend kind {kind!r}; valid kinds: {', '.join(available_backends())}")
