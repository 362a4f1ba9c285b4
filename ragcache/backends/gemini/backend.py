"""Google Gemini through the official ``google-genai`` SDK, on explicit context caches.

Each stable prefix at or above the model's minimum gets one explicit cache
(:mod:`ragcache.backends.gemini.caches`): the instructions become the cache's
system instruction, the corpus blocks, tools and examples its contents, and a
request sends only ``cached_content`` plus the volatile tail (context, history,
snippets, question) — never ``system_instruction``, ``tools`` or
``tool_config`` beside it, which Google rejects. Below the minimum, with
``explicit_cache: false``, or before a prefix has been asked ``create_after``
times, the whole prompt is sent and Gemini's implicit caching may still hit.

A request does not extend an explicit cache (``Capabilities.reads_refresh_ttl``
is False): the keep-warm loop does, through :meth:`GeminiBackend.warm`, which
extends a live cache with ``caches.update(ttl=…)`` or creates a missing one.

Usage: ``prompt_token_count`` already includes ``cached_content_token_count``,
so it maps straight to ``CacheUsage.input_tokens``. The request that created
the cache reports those tokens as a cache *write* (Google bills the creation at
the input price and that request's read at the cached price: the table's
Gemini write price is their sum), and ``raw["cache_storage_token_hours"]``
carries the storage it committed to (priced per 1M token-hours). The wire
shapes (contents, usage, error mapping) live in :mod:`ragcache.backends.gemini.wire`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ragcache.backends.base import (
    Backend,
    BackendOptions,
    CacheUsage,
    Capabilities,
    Generation,
    GenerationOptions,
    parse_options,
    timed_generation,
)
from ragcache.backends.gemini.caches import CacheEntry, CacheRegistry
from ragcache.backends.gemini.wire import (
    KEY_ENVS,
    estimate_tokens,
    finish_reason,
    map_error,
    min_cacheable_tokens,
    missing_cache,
    split_prompt,
    usage_from_metadata,
)
from ragcache.backends.provider import Provider
from ragcache.backends.retry import RetryPolicy, call_with_retries
from ragcache.errors import (
    BackendError,
    ConfigError,
    UnsupportedError,
)
from ragcache.prompt import Prompt

if TYPE_CHECKING:
    from ragcache.config import BackendConfig, CacheConfig

__all__ = [
    "GeminiBackend",
    "GeminiOptions",
    "create",
    "map_error",
    "min_cacheable_tokens",
    "split_prompt",
    "usage_from_metadata",
]

log = logging.getLogger(__name__)
DEFAULT_URL = "https://generativelanguage.googleapis.com"

DEFAULT_MODEL = "gemini-2.5-flash"
CONTEXT_WINDOW = 1_048_576
_TOO_SMALL = ("too small", "min_total_token_count")


class GeminiOptions(BackendOptions):
    """``backend.options`` for ``kind: gemini``."""

    explicit_cache: bool = True  # false: implicit caching only (no cache objects, no storage bill)
    ttl_s: float = Field(300.0, gt=0)  # TTL each cache is created or extended with
    create_after: int = Field(1, ge=1)  # requests of a prefix (in this process) before it gets a cache
    min_cacheable_tokens: int | None = Field(None, ge=0)  # override the per-model table
    count_tokens: str = Field("estimate", pattern="^(estimate|api)$")  # how prefix size is judged
    namespace: str = Field("", pattern="^[A-Za-z0-9_.-]{0,40}$")  # deployments sharing a key: each retires its own
    retry_unsafe: bool = False  # retry a timeout/5xx of a long generation (may bill twice)


def create(config: BackendConfig, cache: CacheConfig) -> GeminiBackend:
    """Registry entry point (``backend.kind: gemini``)."""
    return GeminiBackend(config, cache)


class GeminiBackend(Backend):
    """Gemini models on the Gemini Developer API (or a server at ``base_url`` speaking it)."""

    name = "gemini"
    needs_key = True
    key_env_var = KEY_ENVS[0]
    Options = GeminiOptions

    def __init__(
        self,
        config: BackendConfig,
        cache: CacheConfig,
        *,
        client: Any = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.options = parse_options(GeminiOptions, config)
        self.model = (config.model or DEFAULT_MODEL).removeprefix("models/")
        self.min_tokens = min_cacheable_tokens(self.model, self.options.min_cacheable_tokens)
        # the profile's TTL option nearest the TTL caches are created with (``options.ttl_s``)
        self.cache_ttl = "1h" if self.options.ttl_s >= 3600 else "5m"
        self.policy = RetryPolicy(max_retries=config.max_retries, retry_unsafe=self.options.retry_unsafe)
        self.provider = Provider(
            "gemini", config, default_url=DEFAULT_URL, key_envs=KEY_ENVS, make=self._make_client, client=client
        )
        now = clock or (lambda: datetime.now(UTC))
        self.registry = CacheRegistry(lambda: self.client().caches, self.model, now, self.options.namespace)
        self._seen: Counter[str] = Counter()
        self._too_small: set[str] = set()
        self._sizes: dict[str, int] = {}  # prefix fingerprint → tokens counted by the API
        self._create_lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            context_window=self.config.context_window or CONTEXT_WINDOW,
            min_cacheable_tokens=self.min_tokens,
            max_breakpoints=1,
            exact_prefix_tokens=self.options.explicit_cache,  # Google reports the explicit cache's token count
            ttl_s=self.options.ttl_s,
            reads_refresh_ttl=False,
        )

    def client(self) -> Any:
        return self.provider.client()

    def _where(self) -> str:
        return self.provider.where

    def _call(self, fn: Callable[[], Any], max_tokens: int) -> Any:
        where = self._where()
        return call_with_retries(fn, lambda e: map_error(e, where), self.policy, max_tokens=max_tokens, what=where)

    # --- the explicit cache of a prefix ------------------------------------------------

    def prefix_size(self, prompt: Prompt) -> int:
        """Tokens of the stable prefix: estimated, or counted by Google once per prefix (``count_tokens: api``)."""
        text = "\n\n".join(s.text for s in prompt.stable)
        if self.options.count_tokens != "api":
            return estimate_tokens(text)
        fingerprint = prompt.prefix_fingerprint
        if fingerprint not in self._sizes:
            self._sizes[fingerprint] = self.count_tokens(text)
        return self._sizes[fingerprint]

    def _cacheable(self, prompt: Prompt) -> bool:
        fingerprint = prompt.prefix_fingerprint
        if not self.options.explicit_cache or not prompt.stable or fingerprint in self._too_small:
            return False
        return self.prefix_size(prompt) >= self.min_tokens

    def _create(self, prompt: Prompt) -> CacheEntry | None:
        """Create the prefix's cache; a prefix Google finds too small falls back to implicit caching."""
        system, prefix, _ = split_prompt(prompt)
        body: dict[str, Any] = {"contents": prefix}
        if system is not None:
            body["system_instruction"] = system
        fingerprint = prompt.prefix_fingerprint
        try:
            return self._call(lambda: self.registry.create(fingerprint, body, self.options.ttl_s), 0)
        except BackendError as exc:
            if type(exc) is BackendError and any(m in str(exc).lower() for m in _TOO_SMALL):
                log.info("gemini: prefix %s below the model's cache minimum; implicit caching", fingerprint[:12])
                self._too_small.add(fingerprint)
                return None
            raise

    def _cache_for(self, prompt: Prompt) -> tuple[CacheEntry | None, bool]:
        """The live cache for a request's prefix, created when the prefix earns one: (entry, created)."""
        if not self._cacheable(prompt):
            return None, False
        fingerprint = prompt.prefix_fingerprint
        with self._create_lock:
            entry = self._call(lambda: self.registry.live(fingerprint), 0)
            if entry is not None:
                return entry, False
            self._seen[fingerprint] += 1
            if self._seen[fingerprint] < self.options.create_after:
                return None, False  # a one-off so far: implicit caching
            entry = self._create(prompt)
            return entry, entry is not None

    def retire(self, live_fingerprints: Iterable[str]) -> list[str]:
        """Delete the ragcache caches of prefixes no longer emitted (after a rebuild); their names."""
        return self._call(lambda: self.registry.retire(live_fingerprints), 0)

    # --- requests ----------------------------------------------------------------------

    def request(self, prompt: Prompt, options: GenerationOptions, entry: CacheEntry | None) -> dict[str, Any]:
        """The ``generate_content`` arguments: the cache name and the tail, or the whole prompt."""
        if options.cache_salt is not None:
            raise UnsupportedError("gemini: cache_salt is a vLLM extension; use backend kind 'vllm'")
        system, prefix, tail = split_prompt(prompt)
        config: dict[str, Any] = {
            "max_output_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
        }
        if options.stop:
            config["stop_sequences"] = list(options.stop)
        if options.seed is not None:
            config["seed"] = options.seed
        if entry is not None:
            config["cached_content"] = entry.name
            return {"model": self.model, "contents": tail, "config": config}
        if system is not None:
            config["system_instruction"] = system
        return {"model": self.model, "contents": prefix + tail, "config": config}

    def _usage(self, meta: Any, entry: CacheEntry | None, created: bool) -> CacheUsage:
        if not created or entry is None:
            return usage_from_metadata(meta)
        hours = entry.tokens * self.options.ttl_s / 3600
        return usage_from_metadata(meta, wrote=entry.tokens, storage_token_hours=hours)

    def _with_cache(
        self, prompt: Prompt, call: Callable[[CacheEntry | None], Any]
    ) -> tuple[Any, CacheEntry | None, bool]:
        """Run ``call`` on the prefix's cache; a cache that vanished meanwhile is re-created once."""
        entry, created = self._cache_for(prompt)
        try:
            return call(entry), entry, created
        except BackendError as exc:
            if entry is None or not missing_cache(exc):
                raise
            log.info("gemini: cache %s is gone; re-creating it", entry.name)
            self.registry.forget(entry.fingerprint)
            entry, created = self._cache_for(prompt)
            return call(entry), entry, created

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        started = time.perf_counter()

        def send(entry: CacheEntry | None) -> Any:
            kwargs = self.request(prompt, options, entry)
            return self._call(lambda: self.client().models.generate_content(**kwargs), options.max_tokens)

        response, entry, created = self._with_cache(prompt, send)
        return timed_generation(
            response.text or "",
            self._usage(response.usage_metadata, entry, created),
            started,
            None,
            finish_reason=finish_reason(response),
            model=response.model_version or self.model,
        )

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Iterator[str | Generation]:
        started = time.perf_counter()

        def open_stream(entry: CacheEntry | None) -> tuple[Any, Iterator[Any]]:
            kwargs = self.request(prompt, options, entry)

            def first() -> tuple[Any, Iterator[Any]]:
                chunks = iter(self.client().models.generate_content_stream(**kwargs))
                return next(chunks, None), chunks  # the request is sent on the first chunk

            return self._call(first, options.max_tokens)

        (chunk, chunks), entry, created = self._with_cache(prompt, open_stream)
        first_at, parts, last = None, [], chunk
        while chunk is not None:  # once text has flowed, never retry
            last = chunk
            if chunk.text:
                first_at = first_at or time.perf_counter()
                parts.append(chunk.text)
                yield chunk.text
            chunk = self._next(chunks)
        meta = getattr(last, "usage_metadata", None)
        yield timed_generation(
            "".join(parts), self._usage(meta, entry, created), started, first_at,
            finish_reason=finish_reason(last), model=getattr(last, "model_version", None) or self.model,
        )  # fmt: skip

    def _next(self, chunks: Iterator[Any]) -> Any:
        try:
            return next(chunks, None)
        except Exception as exc:
            error = map_error(exc, self._where())
            if error is None:
                raise
            raise error from exc

    def warm(self, prompt: Prompt) -> CacheUsage:
        """Create the prefix's cache, or extend a live one by the TTL (what keep-warm calls).

        Below the model's minimum nothing is sent: implicit caching needs no warm-up.
        """
        if not self._cacheable(prompt):
            return CacheUsage(input_tokens=self.prefix_size(prompt) if prompt.stable else 0)
        fingerprint = prompt.prefix_fingerprint
        with self._create_lock:
            entry = self._call(lambda: self.registry.live(fingerprint), 0)
            if entry is None:
                entry = self._create(prompt)
                if entry is None:
                    return CacheUsage(input_tokens=self.prefix_size(prompt))
                hours = entry.tokens * self.options.ttl_s / 3600
                raw = {"cache": entry.name, "cache_storage_token_hours": round(hours, 6)}
                return CacheUsage(input_tokens=entry.tokens, cache_write_tokens=entry.tokens, raw=raw)
            old = entry
            entry = self._call(lambda: self.registry.extend(old, self.options.ttl_s), 0)
        added = max((entry.expire_time - old.expire_time).total_seconds(), 0.0) / 3600 * entry.tokens
        raw = {"cache": entry.name, "cache_storage_token_hours": round(added, 6)}
        return CacheUsage(input_tokens=entry.tokens, cached_tokens=entry.tokens, raw=raw)

    def prefix_tokens(self, prompt: Prompt) -> int:
        """The token count Google reported for the prefix's live cache."""
        entry = self.registry.live(prompt.prefix_fingerprint)
        if entry is None:
            raise UnsupportedError("gemini: no explicit cache for this prefix, so no exact count")
        return entry.tokens

    def count_tokens(self, text: str) -> int:
        """``models.count_tokens`` for ``text`` as one user turn."""
        result = self._call(lambda: self.client().models.count_tokens(model=self.model, contents=text), 0)
        return int(result.total_tokens or 0)

    def close(self) -> None:
        self.provider.close()

    def _make_client(self, key: str, base_url: str | None) -> Any:
        try:
            from google import genai
            from google.genai import types
        except ImportError as exc:
            hint = "the gemini backend needs the 'gemini' extra: pip install 'ragcache[gemini]'"
            raise ConfigError(hint) from exc
        http = types.HttpOptions(
            base_url=base_url,
            timeout=int(self.config.timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),  # ragcache's RetryPolicy decides
        )
        return genai.Client(api_key=key, http_options=http)
