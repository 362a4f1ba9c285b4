"""Retries with backoff and SDK error mapping for remote backends, in one place.

The vendor SDKs' own retry loops are switched off (``max_retries=0``) so that
one policy decides. The SDK exceptions are mapped into :mod:`ragcache.errors`
here (:func:`map_sdk_error`, shared by the ``openai`` and ``anthropic`` SDKs),
and each mapped error says whether a retry is *safe* (``safe_to_retry``) and
how long the server asked to wait (``retry_after``). A refused connection or a
429 means nothing was generated, so a retry cannot bill twice; a timeout or a 5xx after the request was sent may
have generated (and billed) a whole answer, so it is retried only for short
requests (warm-ups, ``max_tokens`` ≤ :attr:`RetryPolicy.short_request_tokens`)
or when the user set ``retry_unsafe``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ragcache.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    ContextLengthError,
    RateLimitError,
)

__all__ = ["RetryPolicy", "call_with_retries", "map_sdk_error"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient backend error."""

    max_retries: int = 2
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    retry_unsafe: bool = False
    short_request_tokens: int = 16

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with jitter; a server's Retry-After wins when larger."""
        backoff = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        backoff *= 0.5 + random.random() / 2  # jitter only affects timing, nothing hashed
        return max(backoff, retry_after or 0.0)


def _may_retry(error: BackendError, policy: RetryPolicy, max_tokens: int) -> bool:
    if not error.retryable:
        return False
    if error.safe_to_retry:
        return True
    return policy.retry_unsafe or max_tokens <= policy.short_request_tokens


def call_with_retries(
    call: Callable[[], T],
    map_error: Callable[[Exception], BackendError | None],
    policy: RetryPolicy,
    *,
    max_tokens: int,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; map SDK errors; retry the transient ones that are safe to retry."""
    attempt = 0
    while True:
        try:
            return call()
        except BackendError:
            raise
        except Exception as exc:
            error = map_error(exc)
            if error is None:
                raise  # not an SDK error: a bug, let it surface as is
            if attempt >= policy.max_retries or not _may_retry(error, policy, max_tokens):
                raise error from exc
            delay = policy.delay(attempt, error.retry_after)
            log.warning("%s: %s; retry %d/%d in %.1fs", what, error, attempt + 1, policy.max_retries, delay)
            sleep(delay)
            attempt += 1


_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "maximum model length",
    "max_model_len",
    "context window",
    "prompt is too long",
    "too many tokens",
)


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(exc, "message", None) or exc)


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _refused(exc: BaseException) -> bool:
    """A connection that never opened (nothing was sent); the SDKs wrap httpx or httpx2."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or type(seen).__name__ == "ConnectError":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def map_sdk_error(exc: Exception, sdk: object, where: str, key_env: str | None) -> BackendError | None:
    """Map an exception of the ``openai`` or ``anthropic`` SDK (same generated
    class names) into ragcache's hierarchy; ``where`` names the backend and URL.
    Anything that is not an SDK API error returns None (it is a bug, not a backend fault)."""
    if not isinstance(exc, sdk.APIError):  # type: ignore[attr-defined]
        return None
    text = _message(exc)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, sdk.APITimeoutError):  # type: ignore[attr-defined]
        return BackendUnavailableError(f"{where}: request timed out ({text})", safe_to_retry=False)
    if isinstance(exc, sdk.APIConnectionError):  # type: ignore[attr-defined]
        refused = _refused(exc)
        hint = "; is the server running? check --base-url" if refused else ""
        return BackendUnavailableError(
            f"{where}: cannot connect ({exc.__cause__ or text}){hint}", safe_to_retry=refused
        )
    if isinstance(exc, sdk.AuthenticationError | sdk.PermissionDeniedError):  # type: ignore[attr-defined]
        fix = f"; set the {key_env} environment variable to a valid key" if key_env else ""
        return AuthenticationError(f"{where}: the API key was refused ({text}){fix}")
    if isinstance(exc, sdk.RateLimitError):  # type: ignore[attr-defined]
        return RateLimitError(
            f"{where}: rate limited ({text})",
            retryable="quota" not in text.lower(),  # out of credit: waiting will not help
            safe_to_retry=True,
            retry_after=_retry_after(exc),
        )
    if any(marker in text.lower() for marker in _CONTEXT_MARKERS) and status in (400, 413, 422, None):
        return ContextLengthError(f"{where}: prompt longer than the model's context window ({text})")
    if isinstance(status, int) and status >= 500:
        safe = status in (503, 529)  # overloaded / unavailable: rejected before generating
        return BackendUnavailableError(f"{where}: server error {status} ({text})", safe_to_retry=safe)
    return BackendError(f"{where}: request failed{f' with {status}' if status else ''} ({text})")
