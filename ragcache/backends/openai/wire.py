"""The OpenAI wire format, written once: request bodies (Chat Completions and
Responses), the SDK call, stream parsing, usage, and ``prompt_cache_key``
bucketing.

Backends are *providers* of it (as in pydantic-ai): ``openai`` supplies the
endpoint and its client, a ``prompt_cache_key`` and the model default;
``vllm`` supplies one endpoint per replica (chosen by prefix), a
``cache_salt`` extra body and no cache key. :class:`OpenAIWire` does the rest:
build a :class:`WireRequest` once, send it to an :class:`Endpoint`, parse
what comes back into a :class:`~ragcache.backends.base.Generation`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from ragcache.backends.base import CacheUsage, Generation, GenerationOptions, timed_generation
from ragcache.backends.openai.table import RESPONSES_MIN_OUTPUT_TOKENS
from ragcache.backends.retry import RetryPolicy, call_with_retries, map_sdk_error
from ragcache.errors import BackendUnavailableError
from ragcache.hashing import content_hash
from ragcache.prompt import Prompt

__all__ = [
    "KEY_RATE_LIMIT_PER_MIN",
    "CacheKeyer",
    "Endpoint",
    "OpenAIWire",
    "WireRequest",
    "affinity_headers",
    "affinity_key",
    "chat_body",
    "completion_body",
    "make_client",
    "responses_body",
    "session_of",
    "usage_from_chat",
    "usage_from_responses",
]

Api = Literal["chat", "responses"]
WireApi = Literal["chat", "responses", "completions"]  # completions: a prompt of token ids (vLLM)

KEY_RATE_LIMIT_PER_MIN = 15  # beyond this OpenAI spreads one prompt_cache_key over machines


class CacheKeyer:
    """``prompt_cache_key`` for a prefix: one key while the prefix is quiet,
    ``N`` buckets by session once its rate would exceed the per-key limit."""

    def __init__(
        self,
        limit_per_min: float = KEY_RATE_LIMIT_PER_MIN,
        max_buckets: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit_per_min = limit_per_min
        self.max_buckets = max_buckets
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def buckets(self, fingerprint: str) -> int:
        """How many keys this prefix needs at its rate over the last minute (a power of two)."""
        rate = len(self._window(fingerprint))
        needed = max(1, math.ceil(rate / self.limit_per_min))
        return min(self.max_buckets, 1 << (needed - 1).bit_length())

    def key(self, fingerprint: str, session: str) -> str:
        """Record one request and return its key (the same session keeps its bucket)."""
        window = self._window(fingerprint)
        window.append(self._clock())
        n = self.buckets(fingerprint)
        base = f"ragcache-{fingerprint[:32]}"
        if n == 1:
            return base
        return f"{base}-{int(content_hash(session)[:8], 16) % n}"

    def _window(self, fingerprint: str) -> deque[float]:
        window = self._seen.setdefault(fingerprint, deque())
        horizon = self._clock() - 60.0
        while window and window[0] < horizon:
            window.popleft()
        return window


def affinity_key(prompt: Prompt) -> str | None:
    """The stable routing key of a prompt's prefix (``ragcache-`` + fingerprint), or
    None without a stable prefix. Routers hash it to keep a prefix on one replica."""
    return f"ragcache-{prompt.prefix_fingerprint[:32]}" if prompt.stable else None


def affinity_headers(prompt: Prompt, names: tuple[str | None, ...]) -> dict[str, str]:
    """The affinity key under every configured header name (vllm-router hashes
    ``X-Session-ID``; the production-stack router its ``--session-key`` header)."""
    key = affinity_key(prompt)
    return {name: key for name in names if name} if key else {}


def _sampling(body: dict[str, Any], options: GenerationOptions, reasoning: bool) -> None:
    """Reasoning models reject temperature/top_p other than their defaults: send none."""
    if not reasoning:
        body["temperature"] = options.temperature
        body["top_p"] = options.top_p


def session_of(prompt: Prompt, options: GenerationOptions) -> str:
    """The session a request belongs to: the caller's id, else its conversation's, else its first user turn."""
    if options.session_id:
        return options.session_id
    if prompt.conversation_id:
        return prompt.conversation_id
    first = next((m.content for m in prompt.history if m.role == "user"), prompt.question)
    return first


def _system_parts(prompt: Prompt, max_breakpoints: int = 4, part_type: str = "text") -> list[dict[str, Any]]:
    """The system message as text parts (``text`` on Chat, ``input_text`` on Responses) with explicit
    ``prompt_cache_breakpoint``s (gpt-5.6+): byte-identical to :attr:`Prompt.system_text` once joined."""
    texts = [segment.text.rstrip("\n") for segment in prompt.stable]
    parts = [{"type": part_type, "text": t + ("\n\n" if i < len(texts) - 1 else "\n")} for i, t in enumerate(texts)]
    marked = [i for i, segment in enumerate(prompt.stable) if segment.breakpoint][-max_breakpoints:]
    for i in marked:
        parts[i]["prompt_cache_breakpoint"] = {"mode": "explicit"}
    return parts


def _messages(
    prompt: Prompt, explicit_breakpoints: bool, max_breakpoints: int, part_type: str = "text"
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = prompt.messages()
    if explicit_breakpoints and prompt.stable:
        messages[0] = {"role": "system", "content": _system_parts(prompt, max_breakpoints, part_type)}
    return messages


def _with_cache_fields(
    body: dict[str, Any], cache_key: str | None, retention: str | None, cache_options: dict[str, Any] | None
) -> dict[str, Any]:
    """The prompt-cache fields both APIs take: the routing key, the retention, the ``prompt_cache_options``."""
    if cache_key:
        body["prompt_cache_key"] = cache_key
    if retention:
        body["prompt_cache_retention"] = retention
    if cache_options:
        body["prompt_cache_options"] = dict(cache_options)
    return body


def chat_body(
    prompt: Prompt,
    options: GenerationOptions,
    *,
    model: str,
    cache_key: str | None = None,
    retention: str | None = None,
    explicit_breakpoints: bool = False,
    max_breakpoints: int = 4,
    reasoning: bool = False,
    cache_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Chat Completions request body, stable prefix first; a reasoning model
    gets ``max_completion_tokens`` and no sampling fields, others ``max_tokens``."""
    body: dict[str, Any] = {"model": model, "messages": _messages(prompt, explicit_breakpoints, max_breakpoints)}
    body["max_completion_tokens" if reasoning else "max_tokens"] = options.max_tokens
    _sampling(body, options, reasoning)
    if options.stop:
        body["stop"] = list(options.stop)
    if options.seed is not None:
        body["seed"] = options.seed
    return _with_cache_fields(body, cache_key, retention, cache_options)


def completion_body(prompt_ids: list[int], options: GenerationOptions, *, model: str) -> dict[str, Any]:
    """The Completions request body for a prompt already rendered and tokenized
    (vLLM takes token ids: no chat template, no tokenization on the server)."""
    body: dict[str, Any] = {"model": model, "prompt": prompt_ids, "max_tokens": options.max_tokens}
    _sampling(body, options, reasoning=False)
    if options.stop:
        body["stop"] = list(options.stop)
    if options.seed is not None:
        body["seed"] = options.seed
    return body


def responses_body(
    prompt: Prompt,
    options: GenerationOptions,
    *,
    model: str,
    cache_key: str | None = None,
    retention: str | None = None,
    reasoning: bool = False,
    explicit_breakpoints: bool = False,
    max_breakpoints: int = 4,
    cache_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Responses API request body: the same messages as ``input`` (explicit breakpoints on
    ``input_text`` parts); ``max_output_tokens`` is raised to the API's minimum (a 1-token warm-up sends 16)."""
    body: dict[str, Any] = {
        "model": model,
        "input": _messages(prompt, explicit_breakpoints, max_breakpoints, "input_text"),
        "max_output_tokens": max(options.max_tokens, RESPONSES_MIN_OUTPUT_TOKENS),
        "store": False,
    }
    _sampling(body, options, reasoning)
    return _with_cache_fields(body, cache_key, retention, cache_options)


def _as_dict(usage: Any) -> dict[str, Any]:
    if usage is None:
        return {}
    return usage.model_dump(exclude_none=True) if hasattr(usage, "model_dump") else dict(usage)


def usage_from_chat(usage: Any) -> CacheUsage:
    """Chat Completions usage: ``prompt_tokens`` already includes the cached ones."""
    raw = _as_dict(usage)
    details = raw.get("prompt_tokens_details") or {}
    return CacheUsage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        cache_write_tokens=int(details.get("cache_write_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        raw=raw,
    )


def usage_from_responses(usage: Any) -> CacheUsage:
    """Responses usage: ``input_tokens`` includes ``input_tokens_details.cached_tokens``."""
    raw = _as_dict(usage)
    details = raw.get("input_tokens_details") or {}
    write = int(details.get("cache_write_tokens") or 0)
    split = details.get("cache_write_tokens_details") or {}
    by_ttl = {ttl: int(split.get(f"ttl_{ttl}_tokens") or 0) for ttl in ("30m", "12h")}
    return CacheUsage(
        input_tokens=int(raw.get("input_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        cache_write_tokens=write,
        output_tokens=int(raw.get("output_tokens") or 0),
        raw=raw,
        writes_by_ttl={t: n for t, n in by_ttl.items() if n} if sum(by_ttl.values()) == write else {},
    )


def make_client(base_url: str | None, api_key: str, timeout_s: float) -> Any:
    """An ``openai.OpenAI`` client with the SDK's own retries off (ragcache's policy decides)."""
    import openai

    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)


@dataclass(frozen=True)
class Endpoint:
    """One server speaking the wire format: its SDK client, a name for messages
    (``openai at https://…``) and the environment variable its key comes from."""

    client: Any
    where: str
    key_env: str | None = None


@dataclass(frozen=True)
class WireRequest:
    """One request, built once and sendable to any endpoint (fail-over resends it as is)."""

    api: WireApi
    body: dict[str, Any]
    extra_body: dict[str, Any] | None
    max_tokens: int
    headers: dict[str, str] | None = None  # routing headers (affinity key) sent with the body


@dataclass(frozen=True)
class OpenAIWire:
    """The request shape a provider configured: model, API, retention, breakpoints."""

    model: str
    api: Api = "chat"
    retention: str | None = None
    explicit_breakpoints: bool = False
    max_breakpoints: int = 4
    reasoning: bool = False  # send only what a reasoning model accepts (table.is_reasoning_model)
    cache_options: dict[str, Any] | None = None  # prompt_cache_options (gpt-5.6+): mode, ttl
    prewarm: bool = False  # a warm-up may ask prompt_cache_options.prewarm (Responses, gpt-5.6+)

    def request(
        self,
        prompt: Prompt,
        options: GenerationOptions,
        *,
        cache_key: str | None = None,
        extra_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> WireRequest:
        """The body :meth:`generate` and :meth:`stream` send (SDK transport fields aside)."""
        if self.api == "responses":
            body = responses_body(
                prompt,
                options,
                model=self.model,
                cache_key=cache_key,
                retention=self.retention,
                reasoning=self.reasoning,
                explicit_breakpoints=self.explicit_breakpoints,
                max_breakpoints=self.max_breakpoints,
                cache_options=self.cache_options,
            )
        else:
            body = chat_body(
                prompt,
                options,
                model=self.model,
                cache_key=cache_key,
                retention=self.retention,
                explicit_breakpoints=self.explicit_breakpoints,
                max_breakpoints=self.max_breakpoints,
                reasoning=self.reasoning,
                cache_options=self.cache_options,
            )
        return WireRequest(self.api, body, extra_body, options.max_tokens, headers or None)

    def prewarmed(self, request: WireRequest) -> WireRequest:
        """``request`` asking only to prepare the cache (``prompt_cache_options.prewarm``: no output)."""
        options = {**(request.body.get("prompt_cache_options") or {}), "prewarm": True}
        return replace(request, body={**request.body, "prompt_cache_options": options})

    def completion_request(
        self,
        prompt_ids: list[int],
        options: GenerationOptions,
        *,
        extra_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> WireRequest:
        """A ``/v1/completions`` request of token ids, answered and parsed like a chat one."""
        body = completion_body(prompt_ids, options, model=self.model)
        return WireRequest("completions", body, extra_body, options.max_tokens, headers or None)

    def generate(self, endpoint: Endpoint, request: WireRequest, policy: RetryPolicy) -> Generation:
        """Send ``request`` (retrying per ``policy``) and parse the answer and its usage."""
        started = time.perf_counter()
        create = _create(endpoint, request)
        response = _call(endpoint, policy, request, lambda: create(**request.body, **_extras(request)))
        if request.api == "responses":
            usage, text, finish = usage_from_responses(response.usage), response.output_text, _finish(response)
        elif request.api == "completions":
            choice = response.choices[0]
            usage, text, finish = usage_from_chat(response.usage), choice.text, choice.finish_reason
        else:
            choice = response.choices[0]
            usage, text, finish = usage_from_chat(response.usage), choice.message.content, choice.finish_reason
        return timed_generation(text or "", usage, started, None, finish_reason=finish or "stop", model=response.model)

    def stream(self, endpoint: Endpoint, request: WireRequest, policy: RetryPolicy) -> Iterator[str | Generation]:
        """Yield text deltas, then the :class:`Generation` with the usage of the final chunk.

        Only opening the stream is retried: once text has flowed a retry would bill twice.
        """
        started = time.perf_counter()
        if request.api == "responses":
            events = _call(
                endpoint,
                policy,
                request,
                lambda: endpoint.client.responses.create(**request.body, stream=True, **_extras(request)),
            )
            yield from _read_events(events, endpoint, started, self.model)
            return
        create = _create(endpoint, request)
        chunks = _call(
            endpoint,
            policy,
            request,
            lambda: create(**request.body, stream=True, stream_options={"include_usage": True}, **_extras(request)),
        )
        yield from _read_chunks(chunks, endpoint, started, self.model)


def _create(endpoint: Endpoint, request: WireRequest) -> Callable[..., Any]:
    """The SDK method that sends ``request``."""
    if request.api == "responses":
        return endpoint.client.responses.create
    if request.api == "completions":
        return _completions(endpoint.client)
    return endpoint.client.chat.completions.create


def _completions(client: Any) -> Callable[..., Any]:
    """``client.completions.create`` without the SDK's per-item transform of the body, which
    takes 0.5 s for a prompt of 31k token ids; the response and errors are the SDK's own."""
    import openai
    from openai.types import Completion

    def create(
        *, stream: bool = False, extra_body: dict[str, Any] | None = None, extra_headers: Any = None, **body: Any
    ) -> Any:
        payload = {**body, **(extra_body or {}), **({"stream": True} if stream else {})}
        options = {"headers": extra_headers} if extra_headers else {}
        return client.post("/completions", body=payload, cast_to=Completion, options=options, stream=stream,
                           stream_cls=openai.Stream[Completion])  # fmt: skip

    return create


def _extras(request: WireRequest) -> dict[str, Any]:
    """The SDK's transport arguments: vendor extra body and routing headers."""
    extras: dict[str, Any] = {"extra_body": request.extra_body}
    if request.headers:
        extras["extra_headers"] = request.headers
    return extras


# Responses API ``incomplete_details.reason`` → Chat Completions ``finish_reason``.
_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _finish(response: Any) -> str:
    """A Responses API outcome as a Chat Completions finish reason (``stop``, ``length``…)."""
    if getattr(response, "status", None) == "incomplete":
        details = getattr(response, "incomplete_details", None)
        return _INCOMPLETE_REASONS.get(getattr(details, "reason", None) or "", "length")
    return "stop"


def _read_events(events: Any, endpoint: Endpoint, started: float, model: str) -> Iterator[str | Generation]:
    """Responses API stream events → text deltas, then the Generation from the final response."""
    import openai

    text, first, final = [], None, None
    try:
        for event in events:
            kind = getattr(event, "type", "")
            if kind == "response.output_text.delta" and event.delta:
                first = first or time.perf_counter()
                text.append(event.delta)
                yield event.delta
            elif kind in ("response.completed", "response.incomplete"):
                final = event.response
            elif kind in ("response.failed", "error"):  # mid-stream: never retried
                error = getattr(getattr(event, "response", None), "error", None) or getattr(event, "message", kind)
                raise BackendUnavailableError(f"{endpoint.where}: the response failed ({error})", retryable=False)
    except openai.OpenAIError as exc:  # mid-stream: mapped, never retried
        error = map_sdk_error(exc, openai, endpoint.where, endpoint.key_env)
        if error is None:
            raise
        raise error from exc
    usage = usage_from_responses(final.usage if final is not None else None)
    finish = _finish(final) if final is not None else "stop"
    model = (getattr(final, "model", None) or model) if final is not None else model
    yield timed_generation("".join(text), usage, started, first, finish_reason=finish, model=model)


def _delta(choice: Any) -> str | None:
    """The text a streamed choice adds: ``delta.content`` (chat) or ``text`` (completions)."""
    if hasattr(choice, "delta"):
        return choice.delta.content if choice.delta else None
    return getattr(choice, "text", None)


def _read_chunks(chunks: Any, endpoint: Endpoint, started: float, model: str) -> Iterator[str | Generation]:
    """Chat Completions (or Completions) chunks → text deltas, then the Generation (usage comes in the last chunk)."""
    import openai

    text, first, usage, finish = [], None, None, "stop"
    try:
        for chunk in chunks:
            model = chunk.model or model
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                delta = _delta(choice)
                if delta:
                    first = first or time.perf_counter()
                    text.append(delta)
                    yield delta
    except openai.OpenAIError as exc:  # mid-stream: mapped, never retried
        error = map_sdk_error(exc, openai, endpoint.where, endpoint.key_env)
        if error is None:
            raise
        raise error from exc
    yield timed_generation("".join(text), usage_from_chat(usage), started, first, finish_reason=finish, model=model)


def _call(endpoint: Endpoint, policy: RetryPolicy, request: WireRequest, send: Callable[[], Any]) -> Any:
    import openai

    return call_with_retries(
        send,
        lambda e: map_sdk_error(e, openai, endpoint.where, endpoint.key_env),
        policy,
        max_tokens=request.max_tokens,
        what=endpoint.where,
    )
