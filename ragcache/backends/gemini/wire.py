"""The Gemini API's shapes, once: prompt → contents, usage → CacheUsage, errors → ragcache's.

Pure functions over the ``google-genai`` SDK's objects (imported lazily), used
by :mod:`ragcache.backends.gemini.backend`.
"""

from __future__ import annotations

from typing import Any

from ragcache.backends.base import CacheUsage
from ragcache.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    ContextLengthError,
    RateLimitError,
)
from ragcache.prompt import Prompt, SegmentKind

__all__ = [
    "KEY_ENVS",
    "estimate_tokens",
    "finish_reason",
    "map_error",
    "min_cacheable_tokens",
    "missing_cache",
    "split_prompt",
    "usage_from_metadata",
]

KEY_ENVS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_TOO_LONG = ("exceeds the maximum number of tokens", "input token count", "too many tokens", "context window")


def min_cacheable_tokens(model: str, override: int | None = None) -> int:
    """The model's minimum explicit-cache size: override > its row in the dated table > the default."""
    from ragcache.backends.profile import profile_for

    return profile_for("gemini", model.removeprefix("models/"), min_cacheable_tokens=override).min_cacheable_tokens


def estimate_tokens(text: str) -> int:
    """Offline estimate (~4 characters a token); ``count_tokens: api`` asks Google."""
    return (len(text) + 3) // 4


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def split_prompt(prompt: Prompt) -> tuple[str | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """(system instruction, prefix contents, tail contents) in stable→volatile order.

    The instructions segment is the system instruction; the other stable
    segments (corpus blocks, then tools and examples) are one user content, a
    part per segment; the tail is session context, history and the final turn.
    """
    system = "\n\n".join(s.text for s in prompt.stable if s.kind == SegmentKind.INSTRUCTIONS) or None
    parts = [{"text": s.text} for s in prompt.stable if s.kind != SegmentKind.INSTRUCTIONS]
    prefix = [{"role": "user", "parts": parts}] if parts else []
    tail = [_user(prompt.context)] if prompt.context else []
    tail += [{"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
             for m in prompt.history if m.role != "system"]  # fmt: skip
    tail.append(_user(prompt.user_text))
    return system, prefix, tail


def usage_from_metadata(meta: Any, *, wrote: int = 0, storage_token_hours: float = 0.0) -> CacheUsage:
    """Gemini ``usage_metadata`` → CacheUsage (``prompt_token_count`` includes cached tokens).

    ``wrote``: tokens of the cache this very request created (reported as a write, not a read).
    """
    raw = meta.model_dump(mode="json", exclude_none=True) if hasattr(meta, "model_dump") else dict(meta or {})
    cached = int(raw.get("cached_content_token_count") or 0)
    output = int(raw.get("candidates_token_count") or 0) + int(raw.get("thoughts_token_count") or 0)
    if storage_token_hours:
        raw["cache_storage_token_hours"] = round(storage_token_hours, 6)
    return CacheUsage(
        input_tokens=int(raw.get("prompt_token_count") or 0),
        cached_tokens=max(cached - wrote, 0),
        cache_write_tokens=min(wrote, cached) if cached else wrote,
        output_tokens=output,
        raw=raw,
    )


def _retry_delay(details: Any) -> float | None:
    """Google's ``RetryInfo.retryDelay`` (``"13s"``) from an error body."""
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details", []) if isinstance(error, dict) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None


def map_error(exc: Exception, where: str) -> BackendError | None:
    """SDK / transport exceptions → ragcache's hierarchy, in one place (None: not a backend fault)."""
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        code, text = int(exc.code or 0), str(exc.message or exc)
        lowered = text.lower()
        if code in (401, 403) or "api key not valid" in lowered or "api_key_invalid" in str(exc.details).lower():
            fix = f"; set {' or '.join(KEY_ENVS)} to a valid key"
            return AuthenticationError(f"{where}: the API key was refused ({text}){fix}")
        if code == 429:
            return RateLimitError(f"{where}: rate limited ({text})", safe_to_retry=True,
                                  retry_after=_retry_delay(exc.details))  # fmt: skip
        if code in (400, 413) and any(marker in lowered for marker in _TOO_LONG):
            return ContextLengthError(f"{where}: prompt longer than the model's context window ({text})")
        if code >= 500:
            return BackendUnavailableError(f"{where}: server error {code} ({text})", safe_to_retry=code == 503)
        return BackendError(f"{where}: request failed with {code} ({text})")
    name = type(exc).__name__
    if name.endswith("Timeout") or name == "TimeoutException":
        return BackendUnavailableError(f"{where}: request timed out ({exc})")
    if name in ("ConnectError", "ConnectionRefusedError", "RemoteProtocolError"):
        hint = "; is the server running? check --base-url"
        safe = name != "RemoteProtocolError"  # a refused connection sent nothing; a dropped one may have
        return BackendUnavailableError(f"{where}: cannot connect ({exc}){hint}", safe_to_retry=safe)
    return None


def missing_cache(error: BackendError) -> bool:
    """Google answers 403/404 for a cache that expired or was deleted meanwhile."""
    cause = error.__cause__
    text = str(getattr(cause, "message", "") or cause).lower().replace(" ", "")
    return getattr(cause, "code", None) in (403, 404) and "cachedcontent" in text


def finish_reason(response: Any) -> str:
    """Gemini's finish reasons in Chat Completions' words (stop, length, content_filter)."""
    candidates = getattr(response, "candidates", None) or []
    reason = getattr(candidates[0], "finish_reason", None) if candidates else None
    value = str(getattr(reason, "value", reason) or "STOP")
    return {"STOP": "stop", "MAX_TOKENS": "length"}.get(value, "content_filter" if value else "stop")
