"""OpenAI (or any OpenAI-compatible server) through the official ``openai`` SDK.

This backend is a *provider* of :mod:`ragcache.backends.openai.wire`: it
supplies the endpoint and its client, the model default and a
``prompt_cache_key``. OpenAI caches prefixes automatically (≥ 1024 tokens, the
dated table in :mod:`ragcache.backends.openai.table`); ragcache helps it by keeping the prefix
byte-stable and by sending a ``prompt_cache_key`` derived from the prefix
fingerprint, so requests of one prefix land on the same cache machines. Past
~15 requests/min per key OpenAI spreads a key over machines anyway, so a hot
prefix is split into buckets (fingerprint + hash(session) mod N) that each stay
under that rate.

The cache lifetime is asked for the way the model takes it (``cache_api`` in the
table): ``prompt_cache_retention`` before gpt-5.5, nothing for gpt-5.5 (only ``24h``,
which is planned), ``prompt_cache_options`` (``ttl``, ``mode: explicit`` with
``prompt_cache_breakpoint`` parts on Chat and Responses, ``prewarm`` for a Responses
warm-up) from gpt-5.6 on; an option the model rejects is a ConfigError here, not a 400.

Reasoning models (``gpt-5*``, ``gpt-6*``, ``o1*``/``o3*``/``o4*``: the same table,
``options.reasoning`` overrides it) get
``max_completion_tokens`` and no ``temperature``/``top_p``; other models get
``max_tokens`` and the sampling fields. Pointed at an OpenAI-compatible router
(``base_url``), the affinity key also goes in ``affinity_header`` (and
``user`` with ``affinity_user``) so the router keeps the prefix on one replica.

``base_url`` for OpenAI includes ``/v1`` (https://api.openai.com/v1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ragcache.backends.base import (
    Backend,
    BackendOptions,
    CacheUsage,
    Capabilities,
    Generation,
    GenerationOptions,
    parse_options,
)
from ragcache.backends.openai.table import cache_api, is_reasoning_model
from ragcache.backends.openai.wire import (
    KEY_RATE_LIMIT_PER_MIN,
    CacheKeyer,
    Endpoint,
    OpenAIWire,
    WireRequest,
    affinity_headers,
    affinity_key,
    make_client,
    session_of,
)
from ragcache.backends.profile import profile_for
from ragcache.backends.provider import Provider
from ragcache.backends.retry import RetryPolicy
from ragcache.errors import ConfigError, UnsupportedError
from ragcache.prompt import Prompt, warm_prompt

if TYPE_CHECKING:
    from ragcache.config import BackendConfig, CacheConfig

__all__ = ["OpenAIBackend", "OpenAIOptions", "create"]

DEFAULT_MODEL = "gpt-5-mini"
DEFAULT_URL = "https://api.openai.com/v1"
KEY_ENV = "OPENAI_API_KEY"
MAX_BREAKPOINTS = 4  # explicit prompt_cache_breakpoints a request may write


class OpenAIOptions(BackendOptions):
    """``backend.options`` of ``kind: openai``."""

    api: Literal["chat", "responses"] = "chat"
    cache_key: bool = True  # send prompt_cache_key from the prefix fingerprint
    key_rate_limit_per_min: float = Field(KEY_RATE_LIMIT_PER_MIN, gt=0)
    max_key_buckets: int = Field(16, ge=1)
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None  # deprecated; models before gpt-5.5
    prompt_cache_ttl: Literal["30m", "12h"] | None = None  # prompt_cache_options.ttl (gpt-5.6+; chat: 30m)
    explicit_breakpoints: bool = False  # prompt_cache_breakpoint parts (gpt-5.6+)
    retry_unsafe: bool = False  # retry a 5xx/timeout even on a long generation (may bill twice)
    min_cacheable_tokens: int | None = Field(None, ge=0)  # overrides ragcache.backends.limits
    cache_block_tokens: int = Field(128, ge=1)  # OpenAI reports hits in 128-token increments
    reasoning: bool | None = None  # overrides limits.REASONING_MODELS (no temperature/top_p)
    affinity_header: str | None = "X-Session-ID"  # the prefix's affinity key, for a router in front
    session_header: str | None = None  # also under this header (production-stack router's --session-key)
    affinity_user: bool = False  # also send it as `user` (gateways that route on it; OpenAI logs it)


def create(config: BackendConfig, cache: CacheConfig) -> OpenAIBackend:
    """Registry entry point (``backend.kind: openai``)."""
    return OpenAIBackend(config, cache)


class OpenAIBackend(Backend):
    """Chat Completions (default) or Responses (``options.api: responses``)."""

    name = "openai"
    needs_key = True
    key_env_var = KEY_ENV
    Options = OpenAIOptions

    def __init__(
        self,
        config: BackendConfig,
        cache: CacheConfig,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options: OpenAIOptions = parse_options(self.Options, config)
        self.config = config
        self.model = config.model or DEFAULT_MODEL
        opts = self.options
        self.cache_api = cache_api(self.model)
        self.cache_ttl, retention, ttl = _check_cache_options(self.model, self.cache_api, opts, config, cache.ttl)
        options = {"mode": "explicit"} if opts.explicit_breakpoints else {}
        if ttl:
            options["ttl"] = ttl
        self.wire = OpenAIWire(
            self.model,
            opts.api,
            retention,
            opts.explicit_breakpoints,
            MAX_BREAKPOINTS,
            is_reasoning_model(self.model, opts.reasoning),
            cache_options=options or None,
            prewarm=self.cache_api == "options" and opts.api == "responses",
        )
        self.policy = RetryPolicy(max_retries=config.max_retries, retry_unsafe=opts.retry_unsafe)
        self.keyer = CacheKeyer(opts.key_rate_limit_per_min, opts.max_key_buckets, clock)
        profile = profile_for("openai", self.model, self.cache_ttl, min_cacheable_tokens=opts.min_cacheable_tokens)
        self._capabilities = Capabilities(
            context_window=config.context_window or profile.context_window,
            min_cacheable_tokens=profile.min_cacheable_tokens,
            cache_block_tokens=opts.cache_block_tokens,
            exact_prefix_tokens=False,  # no tokenize endpoint: the warmer estimates from usage
            max_breakpoints=MAX_BREAKPOINTS if opts.explicit_breakpoints else None,
            ttl_s=profile.ttl_s,
        )
        self.provider = Provider(
            "openai",
            config,
            default_url=DEFAULT_URL,
            key_envs=(KEY_ENV,),
            make=lambda key, url: make_client(url, key, config.timeout_s),
            client=client,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def endpoint(self) -> Endpoint:
        """The configured server; the client is created on first use (a missing key fails here)."""
        return Endpoint(self.provider.client(), self.provider.where, self.provider.key_env)

    def request(self, prompt: Prompt, options: GenerationOptions) -> WireRequest:
        """The request :meth:`generate` sends: the wire body plus this provider's cache key."""
        if options.cache_salt is not None:
            raise UnsupportedError("openai: cache_salt is a vLLM extension; use backend kind 'vllm'")
        key = None
        if self.options.cache_key and prompt.stable:
            key = self.keyer.key(prompt.prefix_fingerprint, session_of(prompt, options))
        extra = {"user": affinity_key(prompt)} if self.options.affinity_user and prompt.stable else None
        headers = affinity_headers(prompt, (self.options.affinity_header, self.options.session_header))
        return self.wire.request(prompt, options, cache_key=key, extra_body=extra, headers=headers)

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        return self.wire.generate(self.endpoint(), self.request(prompt, options), self.policy)

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Iterator[str | Generation]:
        yield from self.wire.stream(self.endpoint(), self.request(prompt, options), self.policy)

    def warm(self, prompt: Prompt) -> CacheUsage:
        """Send the stable prefix with a one-word turn and ``max_tokens=1`` (gpt-5.6+ on Responses:
        ``prompt_cache_options.prewarm``, which prepares the cache without generating); the system
        message renders exactly as in real requests."""
        request = self.request(warm_prompt(prompt), GenerationOptions(max_tokens=1))
        if self.wire.prewarm:
            request = self.wire.prewarmed(request)
        return self.wire.generate(self.endpoint(), request, self.policy).usage

    def close(self) -> None:
        self.provider.close()


def _check_cache_options(
    model: str, api: str, opts: OpenAIOptions, config: BackendConfig, cache_ttl: str | None = None
) -> tuple[str, str | None, str | None]:
    """The profile's TTL option for ``model``, the retention to send and the ``prompt_cache_options.ttl``
    to send (``cache_ttl``: ``cache.ttl``, used where the options set none). Options the model rejects
    (a 400 at OpenAI) are a ConfigError naming the field."""
    where = f"{config.source or 'config'}: backend.options"
    if api == "options":
        if opts.prompt_cache_retention == "in_memory":
            raise ConfigError(f"{where}.prompt_cache_retention: {model} accepts only 24h; remove it (deprecated)")
        ttl = opts.prompt_cache_ttl or cache_ttl
        if ttl not in (None, "30m", "12h"):
            raise ConfigError(f"{where}: cache.ttl {ttl!r}: {model} takes prompt_cache_options.ttl 30m or 12h")
        if ttl == "12h" and opts.api == "chat":
            raise ConfigError(f"{where}.prompt_cache_ttl: Chat Completions takes only 30m; use api: responses for 12h")
        return ttl or "30m", None, ttl
    if opts.prompt_cache_ttl or opts.explicit_breakpoints:
        field = "prompt_cache_ttl" if opts.prompt_cache_ttl else "explicit_breakpoints"
        raise ConfigError(f"{where}.{field}: prompt_cache_options is supported for gpt-5.6 and later, not {model}")
    retention = opts.prompt_cache_retention or cache_ttl
    if retention not in (None, "in_memory", "24h"):
        raise ConfigError(f"{where}: cache.ttl {retention!r}: {model} takes prompt_cache_retention in_memory or 24h")
    if api == "retention_24h":
        if retention == "in_memory":
            raise ConfigError(f"{where}.prompt_cache_retention: {model} accepts only 24h; remove it (deprecated)")
        return "24h", None, None
    return retention or "in_memory", retention, None
