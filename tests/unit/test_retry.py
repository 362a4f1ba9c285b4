"""The shared retry loop: what is retried, how often, and what never is."""

from __future__ import annotations

import pytest

from ragcache.backends.retry import RetryPolicy, call_with_retries
from ragcache.errors import BackendError, BackendUnavailableError, RateLimitError


def failing(errors: list[Exception], result: str = "ok"):
    calls = []

    def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return call, calls


def as_backend_error(exc: Exception) -> BackendError | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], BackendError) else None


def test_safe_errors_are_retried_with_backoff_until_success() -> None:
    sleeps: list[float] = []
    errors = [
        RuntimeError(RateLimitError("429", safe_to_retry=True)),
        RuntimeError(RateLimitError("429", safe_to_retry=True)),
    ]
    call, calls = failing(errors)
    policy = RetryPolicy(max_retries=2, base_delay_s=1.0, max_delay_s=8.0)
    assert call_with_retries(call, as_backend_error, policy, max_tokens=500, what="t", sleep=sleeps.append) == "ok"
    assert len(calls) == 3
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # exponential, with jitter


def test_a_server_error_on_a_long_generation_is_not_retried() -> None:
    call, calls = failing([RuntimeError(BackendUnavailableError("500", safe_to_retry=False))])
    with pytest.raises(BackendUnavailableError):
        call_with_retries(
            call, as_backend_error, RetryPolicy(max_retries=3), max_tokens=500, what="t", sleep=lambda s: None
        )
    assert len(calls) == 1


def test_short_requests_and_the_user_setting_allow_unsafe_retries() -> None:
    for max_tokens, policy in ((1, RetryPolicy(max_retries=1)), (500, RetryPolicy(max_retries=1, retry_unsafe=True))):
        call, calls = failing([RuntimeError(BackendUnavailableError("timeout", safe_to_retry=False))])
        assert call_with_retries(call, as_backend_error, policy, max_tokens=max_tokens, what="t", sleep=lambda s: None)
        assert len(calls) == 2


def test_retry_after_is_honoured_and_non_sdk_errors_pass_through_untouched() -> None:
    sleeps: list[float] = []
    call, _ = failing([RuntimeError(RateLimitError("429", safe_to_retry=True, retry_after=7.0))])
    call_with_retries(call, as_backend_error, RetryPolicy(max_retries=1), max_tokens=1, what="t", sleep=sleeps.append)
    assert sleeps == [7.0]
    call, _ = failing([KeyError("a bug")])
    with pytest.raises(KeyError):
        call_with_retries(call, as_backend_error, RetryPolicy(), max_tokens=1, what="t", sleep=lambda s: None)
