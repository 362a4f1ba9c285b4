"""OpenAI (or any OpenAI-compatible server) through the official ``openai`` SDK.

The wire format lives in :mod:`ragcache.backends.openai_wire`; :mod:`ragcache.backends.vllm`
reuses this backend with its own endpoints. OpenAI caches prefixes automatically (≥ 1024
tokens); ragcache helps it by keeping the prefix byte-stable and by sending a
``prompt_cache_key`` derived from the prefix fingerprint, so requests of one
prefix land on the same cache machines. Past ~15 requests/min per key OpenAI
spreads a key over machines anyway, so a hot prefix is split into buckets
(fingerprint + hash(session) mod N) that each stay under that rate.

``base_url`` for OpenAI includes ``/v1`` (https://api.openai.com/v1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ragcache.backends.base import Backend, CacheUsage, Capabilities, Generation, GenerationOptions, timed_generation
from ragcache.backends.openai_wire import (
    KEY_RATE_LIMIT_PER_MIN,
    CacheKeyer,
    chat_body,
    responses_body,
    session_of,
    usage_from_chat,
    usage_from_responses,
    warm_prompt,
)
from ragcache.backends.retry import RetryPolicy, call_with_retries, map_sdk_error
from ragcache.errors import AuthenticationError, ConfigError, UnsupportedError
from ragcache.prompt import Prompt

if TYPE_CHECKING:
    from ragcache.config import BackendConfig, CacheConfig

__all__ = [
    "CacheKeyer",
    "OpenAIBackend",
    "chat_body",
    "create",
    "responses_body",
    "usage_from_chat",
    "usage_from_responses",
    "warm_prompt",
]

DEFAULT_MODEL = "gpt-5-mini"
KEY_ENV = "OPENAI_API_KEY"
MIN_CACHEABLE_TOKENS = 1024
IN_MEMORY_TTL_S = 300.0  # "5 to 10 minutes of inactivity": plan with the lower bound
EXTENDED_TTL_S = 24 * 3600.0
_OPTION_KEYS = {
    "api",
    "cache_key",
    "key_rate_limit_per_min",
    "max_key_buckets",
    "prompt_cache_retention",
    "explicit_breakpoints",
    "retry_unsafe",
    "min_cacheable_tokens",
    "cache_block_tokens",
}


def create(config: BackendConfig, cache: CacheConfig) -> OpenAIBackend:
    """Registry entry point (``backend.kind: openai``)."""
    return OpenAIBackend(config, cache)


class OpenAIBackend(Backend):
    """Chat Completions (default) or Responses (``options.api: responses``)."""

    name = "openai"
    needs_key = True
    key_env_var = KEY_ENV

    def __init__(
        self,
        config: BackendConfig,
        cache: CacheConfig,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        valid = _OPTION_KEYS | self._extra_option_keys()
        unknown = set(config.options) - valid
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ConfigError(f"backend.options: unknown key(s) {names} for {self.name}; valid: {sorted(valid)}")
        self.config = config
        self.cache = cache
        self.model = config.model or self._default_model()
        self.api = config.options.get("api", "chat")
        if self.api not in ("chat", "responses"):
            raise ConfigError(f"backend.options.api: {self.api!r} is not one of 'chat', 'responses'")
        self.policy = RetryPolicy(
            max_retries=config.max_retries, retry_unsafe=bool(config.options.get("retry_unsafe", False))
        )
        self.keyer = CacheKeyer(
            float(config.options.get("key_rate_limit_per_min", KEY_RATE_LIMIT_PER_MIN)),
            int(config.options.get("max_key_buckets", 16)),
            clock,
        )
        self._client = client

    # --- hooks the vLLM backend overrides --------------------------------------
    def _extra_option_keys(self) -> set[str]:
        return set()

    def _default_model(self) -> str:
        return DEFAULT_MODEL

    def _where(self, base_url: str | None = None) -> str:
        return f"{self.name} at {base_url or self.config.base_url or 'https://api.openai.com/v1'}"

    def _make_client(self, base_url: str | None) -> Any:
        import openai

        key = self.config.api_key(KEY_ENV)
        if not key:
            if base_url is None:
                raise AuthenticationError(
                    f"{self.name}: no API key; set the {self.config.api_key_env or KEY_ENV} environment variable"
                )
            key = "not-needed"  # a self-hosted compatible server usually takes any key
        return openai.OpenAI(api_key=key, base_url=base_url, timeout=self.config.timeout_s, max_retries=0)

    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client(self.config.base_url)
        return self._client

    def _cache_key(self, prompt: Prompt, options: GenerationOptions) -> str | None:
        if not self.config.options.get("cache_key", True) or not prompt.stable:
            return None
        return self.keyer.key(prompt.prefix_fingerprint, session_of(prompt, options))

    def _extra_body(self, options: GenerationOptions) -> dict[str, Any] | None:
        if options.cache_salt is not None:
            raise UnsupportedError(f"{self.name}: cache_salt is a vLLM extension; use backend kind 'vllm'")
        return None

    # --- the protocol ------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        retention = self.config.options.get("prompt_cache_retention")
        return Capabilities(
            context_window=self.config.context_window or 128_000,
            min_cacheable_tokens=int(self.config.options.get("min_cacheable_tokens", MIN_CACHEABLE_TOKENS)),
            max_breakpoints=4 if self.config.options.get("explicit_breakpoints") else None,
            ttl_s=EXTENDED_TTL_S if retention == "24h" else IN_MEMORY_TTL_S,
            exact_prefix_tokens=False,
        )

    @property
    def cache_block_tokens(self) -> int:
        """OpenAI reports cache hits in 128-token increments (vLLM: its KV block size)."""
        return int(self.config.options.get("cache_block_tokens", 128))

    def request_body(self, prompt: Prompt, options: GenerationOptions) -> dict[str, Any]:
        """What :meth:`generate` sends (without SDK transport fields)."""
        key = self._cache_key(prompt, options)
        retention = self.config.options.get("prompt_cache_retention")
        if self.api == "responses":
            return responses_body(prompt, options, model=self.model, cache_key=key, retention=retention)
        explicit = bool(self.config.options.get("explicit_breakpoints", False))
        return chat_body(
            prompt, options, model=self.model, cache_key=key, retention=retention, explicit_breakpoints=explicit
        )

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        return self._generate_with(self.client(), self.config.base_url, prompt, options)

    def _generate_with(
        self,
        client: Any,
        base_url: str | None,
        prompt: Prompt,
        options: GenerationOptions,
        policy: RetryPolicy | None = None,
    ) -> Generation:
        import openai

        body = self.request_body(prompt, options)
        extra = self._extra_body(options)
        started = time.perf_counter()
        where = self._where(base_url)

        def call() -> Any:
            if self.api == "responses":
                return client.responses.create(**body, extra_body=extra)
            return client.chat.completions.create(**body, extra_body=extra)

        response = call_with_retries(
            call,
            lambda e: map_sdk_error(e, openai, where, KEY_ENV),
            policy or self.policy,
            max_tokens=options.max_tokens,
            what=where,
        )
        if self.api == "responses":
            return timed_generation(
                response.output_text,
                usage_from_responses(response.usage),
                started,
                None,
                finish_reason=response.status or "stop",
                model=response.model,
            )
        choice = response.choices[0]
        return timed_generation(
            choice.message.content or "",
            usage_from_chat(response.usage),
            started,
            None,
            finish_reason=choice.finish_reason or "stop",
            model=response.model,
        )

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Iterator[str | Generation]:
        if self.api == "responses":
            yield from super().stream(prompt, options)
            return
        yield from self._stream_with(self.client(), self.config.base_url, prompt, options)

    def _stream_with(
        self, client: Any, base_url: str | None, prompt: Prompt, options: GenerationOptions
    ) -> Iterator[str | Generation]:
        import openai

        body = self.request_body(prompt, options)
        extra = self._extra_body(options)
        where = self._where(base_url)
        started = time.perf_counter()
        chunks = call_with_retries(
            lambda: client.chat.completions.create(
                **body, stream=True, stream_options={"include_usage": True}, extra_body=extra
            ),
            lambda e: map_sdk_error(e, openai, where, KEY_ENV),
            self.policy,
            max_tokens=options.max_tokens,
            what=where,
        )
        text, first, usage, finish, model = [], None, None, "stop", self.model
        try:
            for chunk in chunks:  # once text has flowed, never retry: it would bill twice
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        first = first or time.perf_counter()
                        text.append(delta)
                        yield delta
        except openai.OpenAIError as exc:
            error = map_sdk_error(exc, openai, where, KEY_ENV)
            if error is None:
                raise
            raise error from exc
        yield timed_generation("".join(text), usage_from_chat(usage), started, first, finish_reason=finish, model=model)

    def warm(self, prompt: Prompt) -> CacheUsage:
        """Send the stable prefix with a one-word turn and ``max_tokens=1``; the
        system message renders exactly as in real requests."""
        return self.generate(warm_prompt(prompt), GenerationOptions(max_tokens=1)).usage

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
