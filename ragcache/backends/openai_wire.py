"""The OpenAI wire format, written once: request bodies (Chat Completions and
Responses), usage parsing, and ``prompt_cache_key`` bucketing. Used by the
``openai`` backend and, with its own endpoints, the ``vllm`` backend.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ragcache.backends.base import CacheUsage, GenerationOptions
from ragcache.hashing import content_hash
from ragcache.prompt import Prompt

__all__ = [
    "KEY_RATE_LIMIT_PER_MIN",
    "CacheKeyer",
    "chat_body",
    "responses_body",
    "session_of",
    "usage_from_chat",
    "usage_from_responses",
    "warm_prompt",
]

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


def session_of(prompt: Prompt, options: GenerationOptions) -> str:
    """The session a request belongs to: the caller's id, else its first user turn."""
    if options.session_id:
        return options.session_id
    first = next((m.content for m in prompt.history if m.role == "user"), prompt.question)
    return first


def _system_parts(prompt: Prompt, max_breakpoints: int = 4) -> list[dict[str, Any]]:
    """The system message as text parts with explicit ``prompt_cache_breakpoint``s
    (gpt-5.6+): byte-identical to :attr:`Prompt.system_text` once joined."""
    texts = [segment.text.rstrip("\n") for segment in prompt.stable]
    parts = [{"type": "text", "text": t + ("\n\n" if i < len(texts) - 1 else "\n")} for i, t in enumerate(texts)]
    marked = [i for i, segment in enumerate(prompt.stable) if segment.breakpoint][-max_breakpoints:]
    for i in marked:
        parts[i]["prompt_cache_breakpoint"] = {"mode": "explicit"}
    return parts


def _messages(prompt: Prompt, explicit_breakpoints: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = prompt.messages()
    if explicit_breakpoints:
        messages[0] = {"role": "system", "content": _system_parts(prompt)}
    return messages


def chat_body(
    prompt: Prompt,
    options: GenerationOptions,
    *,
    model: str,
    cache_key: str | None = None,
    retention: str | None = None,
    explicit_breakpoints: bool = False,
) -> dict[str, Any]:
    """The Chat Completions request body, stable prefix first."""
    body: dict[str, Any] = {
        "model": model,
        "messages": _messages(prompt, explicit_breakpoints),
        "max_completion_tokens": options.max_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
    }
    if options.stop:
        body["stop"] = list(options.stop)
    if options.seed is not None:
        body["seed"] = options.seed
    if cache_key:
        body["prompt_cache_key"] = cache_key
    if retention:
        body["prompt_cache_retention"] = retention
    if explicit_breakpoints:
        body["prompt_cache_options"] = {"mode": "explicit"}
    return body


def responses_body(
    prompt: Prompt,
    options: GenerationOptions,
    *,
    model: str,
    cache_key: str | None = None,
    retention: str | None = None,
) -> dict[str, Any]:
    """The Responses API request body: the same messages as ``input``."""
    body: dict[str, Any] = {
        "model": model,
        "input": prompt.messages(),
        "max_output_tokens": options.max_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "store": False,
    }
    if cache_key:
        body["prompt_cache_key"] = cache_key
    if retention:
        body["prompt_cache_retention"] = retention
    return body


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
    return CacheUsage(
        input_tokens=int(raw.get("input_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        cache_write_tokens=int(details.get("cache_write_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        raw=raw,
    )


def warm_prompt(prompt: Prompt) -> Prompt:
    """The prefix alone with a minimal final turn: what warm-up requests send."""
    return Prompt(stable=prompt.stable, question=".")
