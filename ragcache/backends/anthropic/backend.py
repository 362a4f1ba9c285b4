"""Anthropic's Messages API through the official ``anthropic`` SDK.

Anthropic caches only up to explicit ``cache_control`` breakpoints (at most 4
per request), each with a TTL of 5 minutes or 1 hour; a prefix shorter than
the model's minimum cacheable length is not cached at all. ragcache puts the
stable prefix in ``system`` as one text block per segment (instructions, corpus
blocks, tools, examples), marks the end of each with a breakpoint where the
prefix up to it is long enough, and in a multi-turn session marks the latest
user turn too, so the next turn reads the whole conversation from cache.
1h breakpoints always precede 5m ones, as the API requires.

Usage: Anthropic's ``input_tokens`` EXCLUDES cached tokens; it is converted to
:class:`CacheUsage`, whose ``input_tokens`` includes them. ``base_url`` is the
server root (``https://api.anthropic.com``, or a vLLM server).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ragcache.backends.anthropic.table import TABLE
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
from ragcache.backends.profile import profile_for
from ragcache.backends.provider import Provider
from ragcache.backends.retry import RetryPolicy, call_with_retries, map_sdk_error
from ragcache.errors import BackendError, UnsupportedError
from ragcache.hashing import content_hash
from ragcache.prompt import Prompt, warm_prompt

if TYPE_CHECKING:
    from ragcache.config import BackendConfig, CacheConfig

__all__ = [
    "AnthropicBackend",
    "AnthropicOptions",
    "BreakpointPlan",
    "create",
    "messages_body",
    "usage_from_message",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-sonnet-4-6"
DEFAULT_URL = "https://api.anthropic.com"
KEY_ENV = "ANTHROPIC_API_KEY"
MAX_BREAKPOINTS = 4
TURN_TTL = "5m"  # the latest turn's breakpoint: after every stable one, so never a 1h after a 5m


class AnthropicOptions(BackendOptions):
    """``backend.options`` of ``kind: anthropic``."""

    ttl: Literal["5m", "1h"] | None = None  # the stable breakpoints' TTL (default: cache.ttl, else 5m)
    count_tokens: Literal["estimate", "api"] = "estimate"  # api: messages.count_tokens, exact
    min_cacheable_tokens: int | None = Field(None, ge=0)  # overrides the table (anthropic/table.py)
    cache_block_tokens: int = Field(1, ge=1)  # Anthropic caches exactly; a vLLM server behind it: its block
    diagnose: bool = False  # send diagnostics.previous_message_id, surface cache_miss_reason
    retry_unsafe: bool = False  # retry a 5xx/timeout even on a long generation (may bill twice)


def create(config: BackendConfig, cache: CacheConfig) -> AnthropicBackend:
    """Registry entry point (``backend.kind: anthropic``)."""
    return AnthropicBackend(config, cache)


def estimate_tokens(text: str) -> int:
    """Offline estimate (~4 characters a token); exact counts need the API."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class Breakpoint:
    """One candidate breakpoint and what was decided about it."""

    label: str
    prefix_tokens: int
    ttl: str | None
    reason: str = ""

    @property
    def placed(self) -> bool:
        return self.ttl is not None


@dataclass(frozen=True)
class BreakpointPlan:
    """Every candidate breakpoint of a request, placed or not, with the reason."""

    breakpoints: tuple[Breakpoint, ...]

    @property
    def placed(self) -> tuple[Breakpoint, ...]:
        return tuple(b for b in self.breakpoints if b.placed)

    @property
    def warnings(self) -> list[str]:
        return [f"{b.label}: {b.reason}" for b in self.breakpoints if not b.placed]


def _plan(
    prompt: Prompt, *, ttl: str, min_tokens: int, count: Callable[[str], int], session_turn: bool
) -> BreakpointPlan:
    """Choose ≤ 4 breakpoints: stable segment ends whose prefix reaches the
    minimum (the latest ones kept when too many), plus the latest turn."""
    slots = MAX_BREAKPOINTS - (1 if session_turn else 0)
    candidates: list[Breakpoint] = []
    total = 0
    for i, segment in enumerate(prompt.stable):
        total += count(segment.text)
        label = f"{segment.kind.value}[{i}]" + (f" {segment.block_id}" if segment.block_id else "")
        if not segment.breakpoint:
            continue
        if total < min_tokens:
            reason = f"prefix of ~{total} tokens is below the model's minimum cacheable {min_tokens}: no breakpoint"
            candidates.append(Breakpoint(label, total, None, reason))
        else:
            candidates.append(Breakpoint(label, total, ttl))
    eligible = [i for i, b in enumerate(candidates) if b.placed]
    for i in eligible[: max(len(eligible) - slots, 0)]:
        b = candidates[i]
        candidates[i] = Breakpoint(b.label, b.prefix_tokens, None, f"over the limit of {MAX_BREAKPOINTS} breakpoints")
    if session_turn:
        candidates.append(Breakpoint("latest turn", total, TURN_TTL))
    return BreakpointPlan(tuple(candidates))


def messages_body(
    prompt: Prompt,
    options: GenerationOptions,
    *,
    model: str,
    ttl: str = "5m",
    min_tokens: int = TABLE.min_cacheable,
    count: Callable[[str], int] = estimate_tokens,
) -> tuple[dict[str, Any], BreakpointPlan]:
    """The Messages request body (system stable→volatile, then the turns) and its breakpoint plan."""
    # A session turn's own breakpoint goes on its latest user turn, or (``Prompt.cache_turn`` false: the
    # next turn may drop it) on the end of the history, so what is cached of the history is still read.
    history = [m for m in prompt.history if m.role != "system"]
    latest = prompt.cache_turn if prompt.cache_turn is not None else bool(history)
    session_turn = bool(history) or latest
    plan = _plan(prompt, ttl=ttl, min_tokens=min_tokens, count=count, session_turn=session_turn)
    by_label = iter(plan.breakpoints)
    system: list[dict[str, Any]] = []
    for segment in prompt.stable:
        block: dict[str, Any] = {"type": "text", "text": segment.text}
        if segment.breakpoint:
            decision = next(by_label)
            if decision.placed:
                block["cache_control"] = {"type": "ephemeral", "ttl": decision.ttl}
        system.append(block)
    if prompt.context:
        system.append({"type": "text", "text": prompt.context})
    messages: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in history]
    last: dict[str, Any] = {"type": "text", "text": prompt.user_text}
    if session_turn:
        marker = {"type": "ephemeral", "ttl": next(by_label).ttl}
        if latest:
            last["cache_control"] = marker
        else:
            end = messages[-1]
            end["content"] = [{"type": "text", "text": end["content"], "cache_control": marker}]
    messages.append({"role": "user", "content": [last]})
    body: dict[str, Any] = {"model": model, "max_tokens": options.max_tokens, "system": system, "messages": messages}
    # temperature/top_p are not sent: current Claude models and SDKs no longer take them.
    if options.stop:
        body["stop_sequences"] = list(options.stop)
    return body, plan


def usage_from_message(usage: Any) -> CacheUsage:
    """Anthropic usage → CacheUsage (input incl. cache reads and writes); the 5m/1h write
    split of ``cache_creation`` → ``writes_by_ttl`` when it accounts for every write."""
    raw = usage.model_dump(exclude_none=True) if hasattr(usage, "model_dump") else dict(usage or {})
    read = int(raw.get("cache_read_input_tokens") or 0)
    write = int(raw.get("cache_creation_input_tokens") or 0)
    split = raw.get("cache_creation") or {}
    by_ttl = {ttl: int(split.get(f"ephemeral_{ttl}_input_tokens") or 0) for ttl in ("5m", "1h")}
    return CacheUsage(
        input_tokens=int(raw.get("input_tokens") or 0) + read + write,
        cached_tokens=read,
        cache_write_tokens=write,
        output_tokens=int(raw.get("output_tokens") or 0),
        raw=raw,
        writes_by_ttl={t: n for t, n in by_ttl.items() if n} if sum(by_ttl.values()) == write else {},
    )


class AnthropicBackend(Backend):
    """Claude models (or any server speaking ``/v1/messages``)."""

    name = "anthropic"
    needs_key = True
    key_env_var = KEY_ENV
    Options = AnthropicOptions

    def __init__(self, config: BackendConfig, cache: CacheConfig, *, client: Any = None) -> None:
        self.options: AnthropicOptions = parse_options(self.Options, config)
        self.config = config
        self.model = config.model or DEFAULT_MODEL
        self.ttl = self.options.ttl or cache.ttl or TABLE.default_ttl
        self.cache_ttl = self.ttl
        profile = profile_for("anthropic", self.model, self.ttl, min_cacheable_tokens=self.options.min_cacheable_tokens)
        self.min_tokens = profile.min_cacheable_tokens
        self.policy = RetryPolicy(max_retries=config.max_retries, retry_unsafe=self.options.retry_unsafe)
        self._capabilities = Capabilities(
            context_window=config.context_window or profile.context_window,
            min_cacheable_tokens=self.min_tokens,
            cache_block_tokens=self.options.cache_block_tokens,
            exact_prefix_tokens=self.options.count_tokens == "api",
            max_breakpoints=MAX_BREAKPOINTS,
            ttl_s=profile.ttl_s,
        )
        self.provider = Provider(
            "anthropic", config, default_url=DEFAULT_URL, key_envs=(KEY_ENV,), make=self._make_client, client=client
        )
        self._counts: dict[str, int] = {}
        self._warm_tokens = 0  # max_tokens 0 pre-warms without generating where the API allows it
        self._last_id: dict[str, str | None] = {}
        self.last_plan: BreakpointPlan | None = None

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def client(self) -> Any:
        return self.provider.client()

    def _where(self) -> str:
        return self.provider.where

    def _segment_tokens(self, text: str) -> int:
        if self.options.count_tokens != "api":
            return estimate_tokens(text)
        key = content_hash(text)
        if key not in self._counts:
            self._counts[key] = self.count_tokens(text)
        return self._counts[key]

    def request_body(self, prompt: Prompt, options: GenerationOptions) -> dict[str, Any]:
        """What :meth:`generate` sends; logs each breakpoint that could not be placed."""
        body, plan = messages_body(
            prompt, options, model=self.model, ttl=self.ttl, min_tokens=self.min_tokens, count=self._segment_tokens
        )
        for warning in plan.warnings:
            log.warning("anthropic breakpoint %s", warning)
        self.last_plan = plan
        if self.options.diagnose:
            body["diagnostics"] = {"previous_message_id": self._last_id.get(prompt.prefix_fingerprint)}
        return body

    def _call(self, fn: Callable[[], Any], max_tokens: int) -> Any:
        import anthropic

        where = self._where()
        return call_with_retries(
            fn, lambda e: map_sdk_error(e, anthropic, where, KEY_ENV), self.policy, max_tokens=max_tokens, what=where
        )

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        if options.cache_salt is not None:
            raise UnsupportedError("anthropic: cache_salt is a vLLM extension; use backend kind 'vllm'")
        body = self.request_body(prompt, options)
        started = time.perf_counter()
        message = self._call(lambda: self.client().messages.create(**body), options.max_tokens)
        self._last_id[prompt.prefix_fingerprint] = message.id
        usage = usage_from_message(message.usage)
        diagnostics = getattr(message, "diagnostics", None)
        if diagnostics is not None and diagnostics.cache_miss_reason is not None:
            usage.raw["cache_miss_reason"] = diagnostics.cache_miss_reason.model_dump()
        text = "".join(block.text for block in message.content if getattr(block, "type", "") == "text")
        return timed_generation(
            text, usage, started, None, finish_reason=message.stop_reason or "stop", model=message.model
        )

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Iterator[str | Generation]:
        """Stream text deltas, then the Generation. Opening the stream (the request
        and its status) is retried like :meth:`generate`; once text has flowed, never."""
        import anthropic

        if options.cache_salt is not None:
            raise UnsupportedError("anthropic: cache_salt is a vLLM extension; use backend kind 'vllm'")
        body = self.request_body(prompt, options)
        started = time.perf_counter()
        first, parts = None, []
        # __enter__ sends the request: a 429/5xx/refused connection raises there, before any text.
        events = self._call(lambda: self.client().messages.stream(**body).__enter__(), options.max_tokens)
        try:
            for delta in events.text_stream:
                first = first or time.perf_counter()
                parts.append(delta)
                yield delta
            message = events.get_final_message()
        except anthropic.AnthropicError as exc:
            error = map_sdk_error(exc, anthropic, self._where(), self.provider.key_env)
            if error is None:
                raise
            raise error from exc
        finally:
            events.close()
        yield timed_generation(
            "".join(parts),
            usage_from_message(message.usage),
            started,
            first,
            finish_reason=message.stop_reason or "stop",
            model=message.model,
        )

    def warm(self, prompt: Prompt) -> CacheUsage:
        """Write the prefix's breakpoints: ``max_tokens: 0`` (pre-warm, no output)
        where the API accepts it, else 1."""
        probe = warm_prompt(prompt)
        try:
            return self.generate(probe, GenerationOptions(max_tokens=self._warm_tokens)).usage
        except BackendError as exc:
            if self._warm_tokens != 0 or type(exc) is not BackendError:  # only a plain 4xx refusal
                raise
            self._warm_tokens = 1  # this server rejects max_tokens 0
            return self.generate(probe, GenerationOptions(max_tokens=1)).usage

    def count_tokens(self, text: str) -> int:
        """``messages.count_tokens`` for ``text`` as one user turn (includes a few framing tokens)."""
        return self._count(messages=[{"role": "user", "content": text}])

    def prefix_tokens(self, prompt: Prompt) -> int:
        """The system blocks of a warm-up by ``messages.count_tokens`` (with ``count_tokens: api``):
        the warm request counted with its system minus without (at most a few framing tokens low)."""
        if self.options.count_tokens != "api":
            return super().prefix_tokens(prompt)
        body, _ = messages_body(
            warm_prompt(prompt),
            GenerationOptions(max_tokens=1),
            model=self.model,
            ttl=self.ttl,
            min_tokens=self.min_tokens,
            count=self._segment_tokens,
        )
        return self._count(system=body["system"], messages=body["messages"]) - self._count(messages=body["messages"])

    def _count(self, **request: Any) -> int:
        result = self._call(lambda: self.client().messages.count_tokens(model=self.model, **request), 0)
        return int(result.input_tokens)

    def close(self) -> None:
        self.provider.close()

    def _make_client(self, key: str, base_url: str | None) -> Any:
        import anthropic

        return anthropic.Anthropic(api_key=key, base_url=base_url, timeout=self.config.timeout_s, max_retries=0)
