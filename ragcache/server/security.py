"""Who may call the server, and how often.

API keys (``server.api_keys_env``, comma-separated) are checked in constant
time: the presented key's SHA-256 is compared with ``hmac.compare_digest``
against *every* configured key's, so neither the position of the matching key
nor a shared prefix shows in the timing. Only digests are kept.

Rate limits (``server.rate_limit_per_min``) are token buckets: each caller
may burst up to the per-minute limit, refilled continuously. The caller is
its API key (by position, never by value) or, with no keys configured, its
client address; failed key attempts count against the address too, so keys
cannot be guessed at full speed. Limits are per worker process.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from ragcache.server.errors import APIError

__all__ = ["Guard", "KeyRing", "RateLimiter"]

MAX_TRACKED_CALLERS = 10_000  # bounded memory under many client addresses; the idlest bucket goes first


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class KeyRing:
    """The configured API keys, as digests; :meth:`identify` never exits early."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(key) for key in keys if key)

    @classmethod
    def parse(cls, value: str) -> KeyRing:
        """Keys from a comma-separated list (``RAGCACHE_API_KEYS=key1,key2``)."""
        return cls(key.strip() for key in value.split(",") if key.strip())

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, token: str) -> int | None:
        """The position of the key equal to ``token``, or None; compares against all keys."""
        probe = _digest(token)
        found = None
        for index, digest in enumerate(self._digests):
            equal = hmac.compare_digest(probe, digest)
            if equal and found is None:
                found = index
        return found


class RateLimiter:
    """A token bucket per caller: ``per_min`` requests a minute, bursts up to ``per_min``."""

    def __init__(
        self, per_min: int, *, clock: Callable[[], float] = time.monotonic, max_callers: int = MAX_TRACKED_CALLERS
    ) -> None:
        if per_min <= 0:
            raise ValueError(f"per_min must be positive, got {per_min}")
        self.per_min = per_min
        self.clock = clock
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # caller -> (tokens, updated)
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """Spend one request of ``caller``'s; 0.0 if allowed, else seconds until the next one is."""
        rate = self.per_min / 60.0
        now = self.clock()
        with self._lock:
            tokens, updated = self._buckets.pop(caller, (float(self.per_min), now))
            tokens = min(float(self.per_min), tokens + (now - updated) * rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[caller] = (tokens, now)  # most recent last
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        return 0.0 if allowed else (1.0 - tokens) / rate


class Guard:
    """The checks in front of ``/v1`` (key, then rate limit) and of protected metrics (key)."""

    def __init__(self, keys: KeyRing, limiter: RateLimiter | None = None) -> None:
        self.keys = keys
        self.limiter = limiter

    def authenticate(self, authorization: str | None, client: str) -> str:
        """The caller's identity (``key:<n>``, or ``addr:<host>`` without keys); 401 when the key is wrong."""
        if not self.keys:
            return f"addr:{client}"
        if not authorization:
            self._limit_failure(client)
            raise APIError(
                401, "missing API key: send the header 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        scheme, _, token = authorization.partition(" ")
        index = self.keys.identify(token.strip())
        if scheme.lower() != "bearer" or index is None:
            self._limit_failure(client)
            raise APIError(
                401, "invalid API key (check the 'Authorization: Bearer <key>' header)", code="invalid_api_key"
            )
        return f"key:{index}"

    def admit(self, authorization: str | None, client: str) -> None:
        """Authenticate, then spend one request of the caller's rate limit (429 past it)."""
        self._limit(self.authenticate(authorization, client))

    def _limit_failure(self, client: str) -> None:
        self._limit(f"addr:{client}")

    def _limit(self, caller: str) -> None:
        if self.limiter is None:
            return
        wait = self.limiter.take(caller)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise APIError(
                429,
                f"rate limit of {self.limiter.per_min} requests per minute reached (server.rate_limit_per_min); "
                f"retry in {retry} s",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(retry)},
            )
