"""A vLLM deployment (one or many OpenAI-compatible servers).

A *provider* of :mod:`ragcache.backends.openai.wire` (the wire format is
written there once); this module supplies one endpoint per replica, the
``cache_salt`` extra body and the model default, and adds what a self-hosted
fleet needs: every request of one prefix goes to the same replica
(rendezvous hashing on the prefix fingerprint) so each replica keeps its own
prefixes warm, with a bounded-load guard — a replica far busier than the rest,
or down, passes the request to the next in hash order (plain consistent
hashing locks a saturated engine into KV thrashing). A failed replica is tried
again after ``retry_down_s``. Prefix-cache hits are read from ``/metrics``;
``cache_salt`` isolates tenants (and gives the no-cache baseline).

Behind a router (``options.router: true``: vllm-router, the production-stack
router, llm-d, SGLang's router) the client-side hashing is off: ragcache talks
to the router's one URL and sends the prefix's affinity key where the router
reads it (``affinity_header``, default ``X-Session-ID``, and ``session_header``),
so the router keeps each prefix on one replica (docs/deploy.md).

With ``prompt_format: token_ids`` (the default) the prompt goes to
``/v1/completions`` as token ids: the stable prefix's ids are learned once per
prefix from the server's own ``/tokenize`` and verified
(:mod:`ragcache.backends.vllm.ids`), so a cached request skips the server's
chat-template rendering and tokenization of the whole corpus (~105 ms of a
cached 32k-token request on an H100) and still shares its KV with chat requests.
A prefix that does not decompose goes as chat messages, logged once. Each request's
tail is rendered here when the server's tokenizer and template load here and render
the probes exactly as its ``/tokenize`` (``tail_tokenizer: auto``), else by ``/tokenize``.

``base_url`` / ``endpoints`` are server roots (``http://host:8000``).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import Field, model_validator

from ragcache.backends.base import (
    Backend,
    BackendOptions,
    CacheUsage,
    Capabilities,
    Generation,
    GenerationOptions,
    parse_options,
)
from ragcache.backends.openai.wire import Endpoint, OpenAIWire, WireRequest, affinity_headers, make_client
from ragcache.backends.retry import RetryPolicy
from ragcache.backends.vllm.ids import PromptIds, Renderer, local_renderer, tokenize_at
from ragcache.config import DEFAULT_MODEL
from ragcache.errors import BackendUnavailableError, ConfigError
from ragcache.hashing import content_hash
from ragcache.prompt import Prompt, warm_prompt

if TYPE_CHECKING:
    from ragcache.config import BackendConfig, CacheConfig

__all__ = [
    "EndpointRouter",
    "PrefixCacheStats",
    "VllmBackend",
    "VllmOptions",
    "create",
    "max_model_len_of",
    "model_root_of",
    "parse_prefix_cache_stats",
    "read_max_model_len",
    "read_model_root",
    "read_prefix_cache_stats",
]

DEFAULT_URL = "http://127.0.0.1:8000"
KEY_ENV = "VLLM_API_KEY"
DEFAULT_BLOCK_SIZE = 16  # vLLM's KV block size on GPU when /metrics cannot tell (CPU: 128)


class VllmOptions(BackendOptions):
    """``backend.options`` of ``kind: vllm``."""

    api: Literal["chat", "responses"] = "chat"
    load_factor: float = Field(1.25, ge=1.0)  # a replica over load_factor × its fair share passes on
    retry_down_s: float = Field(30.0, ge=0)  # a failed replica is tried again after this
    block_size: int | None = Field(None, gt=0)  # KV block size (else read from /metrics)
    retry_unsafe: bool = False  # retry a 5xx/timeout even on a long generation
    router: bool = False  # base_url is a router in front of the replicas: no client-side rendezvous
    affinity_header: str | None = "X-Session-ID"  # the prefix's affinity key (vllm-router consistent_hash)
    session_header: str | None = None  # also under this header (production-stack router's --session-key)
    # token_ids: the prompt as token ids on /v1/completions, the stable prefix tokenized once (the
    # server skips rendering and tokenizing the corpus per request); chat: messages, rendered per request
    prompt_format: Literal["token_ids", "chat"] = "token_ids"
    # auto: render each request's tail here with the server's tokenizer and template when they load here
    # (its /v1/models root) and render probes exactly as /tokenize does; server: always ask /tokenize
    tail_tokenizer: Literal["auto", "server"] = "auto"

    @model_validator(mode="after")
    def _token_ids_need_chat(self) -> VllmOptions:
        if self.api == "responses" and "prompt_format" in self.model_fields_set and self.prompt_format == "token_ids":
            raise ValueError("token_ids are sent to /v1/completions: with api: responses use prompt_format: chat")
        return self


def create(config: BackendConfig, cache: CacheConfig) -> VllmBackend:
    """Registry entry point (``backend.kind: vllm``)."""
    return VllmBackend(config, cache)


def _plus(generation: Generation, seconds: float) -> Generation:
    """``generation`` timed from before its request was built (the /tokenize of the tail counts)."""
    return replace(generation, ttft_s=generation.ttft_s + seconds, latency_s=generation.latency_s + seconds)


def _root(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class EndpointRouter:
    """Rendezvous (highest-random-weight) hashing with bounded load.

    Each endpoint scores ``sha256(endpoint, fingerprint)``; the highest score
    owns the prefix. Removing an endpoint moves only the prefixes it owned. An
    endpoint holding ≥ ``ceil(load_factor × (in_flight + 1) / up)`` requests is
    full and passes to the next in order; a down endpoint is skipped until
    ``retry_down_s`` has passed.
    """

    def __init__(
        self,
        endpoints: list[str],
        *,
        load_factor: float = 1.25,
        retry_down_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise ConfigError("backend: vllm needs base_url or at least one entry in endpoints")
        if load_factor < 1.0:
            raise ConfigError(f"backend.options.load_factor must be ≥ 1.0, got {load_factor}")
        self.endpoints = list(dict.fromkeys(endpoints))
        self.load_factor = load_factor
        self.retry_down_s = retry_down_s
        self._clock = clock
        self._in_flight = dict.fromkeys(self.endpoints, 0)
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def order(self, fingerprint: str) -> list[str]:
        """All endpoints by descending rendezvous score for ``fingerprint``."""
        return sorted(self.endpoints, key=lambda e: content_hash(f"{e}\n{fingerprint}"), reverse=True)

    def owner(self, fingerprint: str) -> str:
        return self.order(fingerprint)[0]

    def is_down(self, endpoint: str) -> bool:
        return self._down_until.get(endpoint, -math.inf) > self._clock()

    def capacity(self) -> int:
        """The most requests one up endpoint may hold before it counts as full."""
        up = sum(1 for e in self.endpoints if not self.is_down(e)) or 1
        return math.ceil(self.load_factor * (sum(self._in_flight.values()) + 1) / up)

    def candidates(self, fingerprint: str) -> list[str]:
        """Endpoints to try in turn: up and not full first, then full, then down."""
        with self._lock:
            cap = self.capacity()
            ranked = self.order(fingerprint)
            up = [e for e in ranked if not self.is_down(e)]
            ready = [e for e in up if self._in_flight[e] < cap]
            full = [e for e in up if e not in ready]
            return ready + full + [e for e in ranked if e not in up]

    @contextmanager
    def lease(self, endpoint: str) -> Iterator[None]:
        """Count a request in flight on ``endpoint`` for the load guard."""
        with self._lock:
            self._in_flight[endpoint] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[endpoint] -= 1

    def mark_down(self, endpoint: str) -> None:
        self._down_until[endpoint] = self._clock() + self.retry_down_s

    def mark_up(self, endpoint: str) -> None:
        self._down_until.pop(endpoint, None)


@dataclass(frozen=True)
class PrefixCacheStats:
    """vLLM's prefix-cache counters (tokens) and KV block size from ``/metrics``."""

    queries: float
    hits: float
    block_size: int | None = None

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


def parse_prefix_cache_stats(text: str) -> PrefixCacheStats:
    """Sum ``vllm:prefix_cache_{queries,hits}_total`` over engines; read the block size."""
    from prometheus_client.parser import text_string_to_metric_families

    queries = hits = 0.0
    block_size = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vllm:prefix_cache_queries_total":
                queries += sample.value
            elif sample.name == "vllm:prefix_cache_hits_total":
                hits += sample.value
            elif family.name == "vllm:cache_config_info" and "block_size" in sample.labels:
                block_size = int(sample.labels["block_size"])
    return PrefixCacheStats(queries=queries, hits=hits, block_size=block_size)


def read_prefix_cache_stats(endpoint: str, timeout_s: float = 10.0) -> PrefixCacheStats:
    """GET ``<endpoint>/metrics`` and parse the prefix-cache counters."""
    url = f"{_root(endpoint)}/metrics"
    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise BackendUnavailableError(f"vllm at {endpoint}: cannot read {url} ({exc})") from exc
    return parse_prefix_cache_stats(response.text)


def max_model_len_of(models: dict[str, Any], model: str) -> int | None:
    """``max_model_len`` of ``model`` in a ``/v1/models`` answer (the first entry if none is named so)."""
    entries = [e for e in models.get("data") or [] if isinstance(e, dict)]
    entry = next((e for e in entries if e.get("id") == model), entries[0] if entries else None)
    value = entry.get("max_model_len") if entry else None
    return int(value) if isinstance(value, int) and value > 0 else None


def model_root_of(models: dict[str, Any], model: str) -> str | None:
    """``root`` of ``model`` in a ``/v1/models`` answer: the folder or id the server loaded."""
    entries = [e for e in models.get("data") or [] if isinstance(e, dict)]
    entry = next((e for e in entries if e.get("id") == model), entries[0] if entries else None)
    root = entry.get("root") if entry else None
    return root if isinstance(root, str) and root else None


def _read_models(endpoint: str, timeout_s: float) -> dict[str, Any] | None:
    """GET ``<endpoint>/v1/models`` (the parsed JSON object), or None when the server does not answer it."""
    try:
        response = httpx.get(f"{_root(endpoint)}/v1/models", timeout=timeout_s)
        response.raise_for_status()
        models = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return models if isinstance(models, dict) else None


def read_model_root(endpoint: str, model: str, timeout_s: float = 10.0) -> str | None:
    """GET ``<endpoint>/v1/models``: where the server loaded ``model`` from, or None."""
    models = _read_models(endpoint, timeout_s)
    return None if models is None else model_root_of(models, model)


def read_max_model_len(endpoint: str, model: str, timeout_s: float = 10.0) -> int | None:
    """GET ``<endpoint>/v1/models``: the server's context window, or None when it cannot say."""
    models = _read_models(endpoint, timeout_s)
    return None if models is None else max_model_len_of(models, model)


class VllmBackend(Backend):
    """One or many vLLM servers, routed by prefix."""

    name = "vllm"
    needs_key = False
    key_env_var = KEY_ENV
    Options = VllmOptions

    def __init__(
        self, config: BackendConfig, cache: CacheConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.options: VllmOptions = parse_options(self.Options, config)
        self.config = config
        self.model = config.model or DEFAULT_MODEL
        self.wire = OpenAIWire(self.model, self.options.api)
        self.policy = RetryPolicy(max_retries=config.max_retries, retry_unsafe=self.options.retry_unsafe)
        endpoints = [_root(e) for e in (config.endpoints or [config.base_url or DEFAULT_URL])]
        if self.options.router and len(endpoints) > 1:
            raise ConfigError(
                f"{config.source or 'backend'}: backend.options.router is true, so give the router's one URL "
                f"as base_url, not {len(endpoints)} endpoints (the router spreads prefixes over the replicas)"
            )
        self.router = EndpointRouter(
            endpoints, load_factor=self.options.load_factor, retry_down_s=self.options.retry_down_s, clock=clock
        )
        self._clients: dict[str, Any] = {}
        self._http = httpx.Client(timeout=config.timeout_s)  # /tokenize: one connection, kept alive
        self._block_size: int | None = self.options.block_size
        self._max_model_len: int | None = None
        self._window_asked_at = -math.inf
        self._clock = clock
        token_ids = self.options.prompt_format == "token_ids" and self.options.api == "chat"
        local = self._local_renderer if self.options.tail_tokenizer == "auto" else None
        self.prompt_ids = PromptIds(self._tokenize, local=local) if token_ids else None

    @property
    def capabilities(self) -> Capabilities:
        block = self.block_size()
        return Capabilities(
            context_window=self.config.context_window or self.server_context_window() or 8192,
            min_cacheable_tokens=block,  # a partial block is not cached: one block is the minimum
            cache_block_tokens=block,
            exact_prefix_tokens=True,  # /tokenize renders the chat template like the engine
            max_breakpoints=None,  # automatic prefix caching
            ttl_s=None,  # no TTL: LRU eviction under memory pressure
        )

    def server_context_window(self) -> int | None:
        """The server's ``max_model_len`` (``/v1/models``), used when ``backend.context_window`` is
        unset; read once it answers, asked again at most every ``retry_down_s`` until then."""
        now = self._clock()
        if self._max_model_len is None and now - self._window_asked_at >= self.router.retry_down_s:
            self._window_asked_at = now
            timeout = min(self.config.timeout_s, 5.0)  # capabilities are read often: never hang on them
            self._max_model_len = read_max_model_len(self.router.endpoints[0], self.model, timeout)
        return self._max_model_len

    def block_size(self) -> int:
        """KV block size: only whole blocks are cached (options, else /metrics, else 16)."""
        if self._block_size is None:
            try:
                self._block_size = read_prefix_cache_stats(self.router.endpoints[0]).block_size or DEFAULT_BLOCK_SIZE
            except BackendUnavailableError:
                return DEFAULT_BLOCK_SIZE  # not remembered: ask again once the server is up
        return self._block_size

    def endpoint(self, url: str) -> Endpoint:
        """The replica at ``url`` (server root) with its client."""
        if url not in self._clients:
            key = self.config.api_key(KEY_ENV) or "not-needed"
            self._clients[url] = make_client(f"{url}/v1", key, self.config.timeout_s)
        return Endpoint(self._clients[url], f"vllm at {url}", KEY_ENV)

    def request(self, prompt: Prompt, options: GenerationOptions) -> WireRequest:
        """What :meth:`generate` sends: the prompt as token ids on ``/v1/completions``
        (``prompt_format: token_ids`` and a prefix that decomposes), else :meth:`chat_request`."""
        ids = self.token_ids(prompt)
        if ids is None:
            return self.chat_request(prompt, options)
        extra, headers = self._extras(prompt, options)
        return self.wire.completion_request(ids, options, extra_body=extra, headers=headers)

    def chat_request(self, prompt: Prompt, options: GenerationOptions) -> WireRequest:
        """The chat body, with ``cache_salt`` as vLLM's extra body and the prefix's
        affinity headers (a router in front keeps the prefix on one replica)."""
        extra, headers = self._extras(prompt, options)
        return self.wire.request(prompt, options, extra_body=extra, headers=headers)

    def token_ids(self, prompt: Prompt) -> list[int] | None:
        """The prompt's token ids as the chat endpoint computes them, or None (send it as chat)."""
        if self.prompt_ids is None:
            return None
        try:
            return self.prompt_ids.prompt_ids(prompt)
        except BackendUnavailableError:
            return None  # no server answers /tokenize: the chat request fails over and reports it

    def _extras(self, prompt: Prompt, options: GenerationOptions) -> tuple[dict[str, Any] | None, dict[str, str]]:
        extra = {"cache_salt": options.cache_salt} if options.cache_salt is not None else None
        return extra, affinity_headers(prompt, (self.options.affinity_header, self.options.session_header))

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        """Try replicas in rendezvous order; a refused connection fails over at once."""
        started = time.perf_counter()
        request = self.request(prompt, options)
        built = time.perf_counter() - started
        candidates = self.router.candidates(prompt.prefix_fingerprint)
        last: BackendUnavailableError | None = None
        for i, url in enumerate(candidates):
            more = i < len(candidates) - 1
            policy = RetryPolicy(max_retries=0) if more else self.policy
            with self.router.lease(url):
                try:
                    generation = self.wire.generate(self.endpoint(url), request, policy)
                except BackendUnavailableError as exc:
                    self.router.mark_down(url)
                    if not exc.safe_to_retry:
                        raise  # it may have generated: do not send it again elsewhere
                    last = exc
                    continue
            self.router.mark_up(url)
            return _plus(generation, built)
        assert last is not None
        raise last

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Iterator[str | Generation]:
        """Stream from the prefix's replica; fail over only before the first delta."""
        started = time.perf_counter()
        request = self.request(prompt, options)
        built = time.perf_counter() - started
        candidates = self.router.candidates(prompt.prefix_fingerprint)
        for i, url in enumerate(candidates):
            with self.router.lease(url):
                items = self.wire.stream(self.endpoint(url), request, self.policy)
                try:
                    first = next(items)
                except BackendUnavailableError as exc:
                    self.router.mark_down(url)
                    if not exc.safe_to_retry or i == len(candidates) - 1:
                        raise
                    continue
                self.router.mark_up(url)
                for item in itertools.chain([first], items):
                    yield _plus(item, built) if isinstance(item, Generation) else item
                return

    def warm(self, prompt: Prompt) -> CacheUsage:
        """Send the stable prefix with a one-word turn and ``max_tokens=1`` to its replica."""
        return self.generate(warm_prompt(prompt), GenerationOptions(max_tokens=1)).usage

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize({"prompt": text, "add_special_tokens": False}))

    def prefix_tokens(self, prompt: Prompt) -> int:
        """Tokens of the stable prefix exactly as the chat template renders it."""
        learned = self.prompt_ids.prefix_ids(prompt) if self.prompt_ids is not None and prompt.stable else None
        if learned is not None:
            return len(learned)
        return len(self._tokenize({"messages": prompt.prefix_messages(), "add_generation_prompt": False}))

    def _local_renderer(self) -> Renderer | None:
        """The server's tokenizer and template loaded here from its ``/v1/models`` root, or None."""
        root = read_model_root(self.router.endpoints[0], self.model, min(self.config.timeout_s, 10.0))
        return local_renderer(root) if root is not None else None

    def _tokenize(self, payload: dict[str, Any]) -> list[int]:
        """``/tokenize`` on the first endpoint that answers, up ones first (replicas share the tokenizer)."""
        up = [e for e in self.router.endpoints if not self.router.is_down(e)]
        urls = up + [e for e in self.router.endpoints if e not in up]
        return tokenize_at(self._http, urls, {"model": self.model, **payload})

    def prefix_cache_stats(self) -> dict[str, PrefixCacheStats]:
        """``/metrics`` counters of every replica that answers."""
        stats = {}
        for url in self.router.endpoints:
            try:
                stats[url] = read_prefix_cache_stats(url)
            except BackendUnavailableError:
                continue
        return stats

    def close(self) -> None:
        self._http.close()
        for client in self._clients.values():
            client.close()
        self._clients.clear()
