"""API keys in constant time, token-bucket rate limits, and secrets scrubbed from logs and errors."""

from __future__ import annotations

import logging

import pytest

from ragcache.errors import AuthenticationError, RateLimitError
from ragcache.server import security
from ragcache.server.errors import APIError, describe
from ragcache.server.redact import MASK, add_secrets, env_secrets, install_log_redaction, redact
from ragcache.server.security import Guard, KeyRing, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- keys ---------------------------------------------------------------------


def test_keys_are_identified_by_position_and_compared_against_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing.parse(" alpha-key-1 , beta-key-2,,")
    assert len(ring) == 2
    calls = []
    real = security.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    assert ring.identify("alpha-key-1") == 0  # the first key matches, the second is still compared
    assert ring.identify("beta-key-2") == 1
    assert ring.identify("alpha-key") is None  # a prefix is not the key
    assert ring.identify("") is None
    assert len(calls) == 8
    assert set(calls) == {(32, 32)}  # digests: the key's length does not reach the comparison


def test_guard_answers_401_for_missing_wrong_or_non_bearer_keys() -> None:
    guard = Guard(KeyRing(["right-key-123"]))
    assert guard.authenticate("Bearer right-key-123", "10.0.0.1") == "key:0"
    for header, code in [
        (None, "missing_api_key"),
        ("Bearer wrong-key-456", "invalid_api_key"),
        ("Basic right-key-123", "invalid_api_key"),
    ]:
        with pytest.raises(APIError) as caught:
            guard.authenticate(header, "10.0.0.1")
        assert (caught.value.status, caught.value.code) == (401, code)
        assert "right-key-123" not in caught.value.message
    assert Guard(KeyRing([])).authenticate(None, "10.0.0.1") == "addr:10.0.0.1"


# --- rate limits ----------------------------------------------------------------


def test_token_bucket_bursts_then_refills_at_the_per_minute_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # one request every 10 s, bursts of 6
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 6
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0.0  # callers have their own buckets
    clock.now += 5.0
    assert limiter.take("a") == pytest.approx(5.0)
    clock.now += 5.0
    assert limiter.take("a") == 0.0
    clock.now += 3600.0
    assert [limiter.take("a") for _ in range(7)].count(0.0) == 6  # refills up to the burst, not beyond


def test_rate_limited_callers_get_429_with_retry_after_and_failed_keys_count_per_address() -> None:
    clock = Clock()
    guard = Guard(KeyRing(["right-key-123"]), RateLimiter(2, clock=clock))
    guard.admit("Bearer right-key-123", "10.0.0.1")
    guard.admit("Bearer right-key-123", "10.0.0.2")  # the same key from elsewhere: the same bucket
    with pytest.raises(APIError) as caught:
        guard.admit("Bearer right-key-123", "10.0.0.3")
    assert (caught.value.status, caught.value.code) == (429, "rate_limit_exceeded")
    assert caught.value.headers == {"Retry-After": "30"}
    reply = describe(caught.value)
    assert reply.body()["error"]["type"] == "rate_limit_error"
    assert dict(reply.headers) == {"Retry-After": "30"}
    assert reply.response().headers["retry-after"] == "30"
    for _ in range(2):
        with pytest.raises(APIError, match="invalid API key"):
            guard.admit("Bearer guess", "10.0.0.9")
    with pytest.raises(APIError) as guessing:
        guard.admit("Bearer guess", "10.0.0.9")
    assert guessing.value.status == 429


def test_the_limiter_forgets_the_idlest_callers_past_its_cap() -> None:
    limiter = RateLimiter(1, clock=Clock(), max_callers=3)
    for caller in "abcd":
        assert limiter.take(caller) == 0.0
    assert limiter.take("a") == 0.0  # "a" was evicted, so it starts with a full bucket again
    assert limiter.take("d") > 0.0


def test_a_vendor_rate_limit_passes_its_retry_after_on() -> None:
    reply = describe(RateLimitError("openai: rate limited", retry_after=2.2))
    assert reply.status == 429 and dict(reply.headers) == {"Retry-After": "3"}


# --- secrets --------------------------------------------------------------------


def test_credentials_are_found_by_variable_name() -> None:
    environ = {
        "OPENAI_API_KEY": "sk-proj-abcdef123456",
        "RAGCACHE_API_KEYS": "first-key-0001, second-key-0002",
        "MY_VENDOR_CREDS": "named-by-the-config-xyz",
        "HF_HUB_DISABLE_TOKEN": "1",  # too short to be a credential
        "HF_TOKEN_PATH": "/root/.cache/huggingface/token",  # where a token lives, not the token
        "PATH": "/usr/local/bin:/usr/bin",
    }
    found = env_secrets(["MY_VENDOR_CREDS"], environ)
    assert {"sk-proj-abcdef123456", "first-key-0001", "second-key-0002", "named-by-the-config-xyz"} <= found
    assert "1" not in found and "/usr/local/bin:/usr/bin" not in found
    assert "/root/.cache/huggingface/token" not in found


def test_error_messages_and_log_records_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-test-scrub-0123456789"
    add_secrets([secret])
    assert redact(f"Incorrect API key provided: {secret}.") == f"Incorrect API key provided: {MASK}."
    reply = describe(AuthenticationError(f"openai at http://x: the API key was refused ({secret})"))
    assert secret not in reply.message and MASK in reply.message

    install_log_redaction()
    log = logging.getLogger("ragcache.test.redact")
    with caplog.at_level(logging.INFO, logger="ragcache.test.redact"):
        log.info("key=%s status=%d", secret, 401)
        log.warning(f"inline {secret}")
        try:
            raise RuntimeError(f"boom {secret}")
        except RuntimeError:
            log.exception("failed")
    text = "\n".join(caplog.text.splitlines())
    assert secret not in text
    assert "key=*** status=401" in text and "inline ***" in text and "RuntimeError: boom ***" in text
