"""Gemini explicit context caches, one per stable prefix, found again by name.

Google stores an explicit cache as a ``cachedContents/<id>`` resource with an
``expireTime``; a request does not extend it, storage is billed per token-hour
until it expires or is deleted. The registry here names each cache after the
prefix fingerprint (``displayName = "ragcache-<fingerprint>"``, or
``"ragcache-<namespace>:<fingerprint>"`` with ``backend.options.namespace``), so
any process finds the caches another one created (``caches.list``), extends a
cache with ``caches.update(ttl=…)`` when keep-warm decides to, and deletes the
caches of prefixes a rebuild retired (:meth:`CacheRegistry.retire`), never
those of another namespace or model.

The system instruction and the rest of the prefix live *inside* the cache: a
``generateContent`` that names ``cached_content`` may not also carry
``system_instruction``, ``tools`` or ``tool_config`` (Google answers 400).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["DISPLAY_PREFIX", "CacheEntry", "CacheRegistry", "display_name", "fingerprint_of"]

DISPLAY_PREFIX = "ragcache-"
_SAFETY_S = 5.0  # a cache this close to expiry is treated as gone (a request takes time to arrive)


def display_name(fingerprint: str, namespace: str = "") -> str:
    """The ``displayName`` of a prefix's cache: ``ragcache-[<namespace>:]<fingerprint>`` (≤ 128 characters)."""
    return f"{DISPLAY_PREFIX}{namespace + ':' if namespace else ''}{fingerprint}"[:128]


def fingerprint_of(name: str | None, namespace: str = "") -> str | None:
    """The prefix fingerprint a ragcache ``displayName`` of ``namespace`` encodes (None: not ours)."""
    head = f"{DISPLAY_PREFIX}{namespace + ':' if namespace else ''}"
    if not name or not name.startswith(head) or ":" in name[len(head) :]:
        return None
    return name[len(head) :] or None


def _model_id(model: str | None) -> str:
    return (model or "").removeprefix("models/")


@dataclass(frozen=True)
class CacheEntry:
    """One explicit cache as Google last described it."""

    name: str  # cachedContents/<id>
    fingerprint: str
    model: str
    tokens: int
    expire_time: datetime

    def ttl_left(self, now: datetime) -> float:
        return (self.expire_time - now).total_seconds()

    @classmethod
    def from_sdk(cls, cached: Any, fingerprint: str) -> CacheEntry:
        usage = getattr(cached, "usage_metadata", None)
        expire = cached.expire_time or datetime.now(UTC)
        return cls(
            name=str(cached.name),
            fingerprint=fingerprint,
            model=_model_id(cached.model),
            tokens=int(getattr(usage, "total_token_count", 0) or 0),
            expire_time=expire if expire.tzinfo else expire.replace(tzinfo=UTC),
        )


class CacheRegistry:
    """What explicit caches exist for one model, reconciled with ``caches.list``.

    ``caches`` is the SDK's ``client.caches``; ``clock`` returns aware UTC
    datetimes (tests pass the clock of the server standing in for Google);
    ``namespace`` keeps deployments that share a key apart (each retires only its own).
    """

    def __init__(
        self, caches: Callable[[], Any], model: str, clock: Callable[[], datetime], namespace: str = ""
    ) -> None:
        self._caches = caches
        self.namespace = namespace
        self.model = _model_id(model)
        self.clock = clock
        self._entries: dict[str, CacheEntry] = {}
        self._reconciled = False
        self._lock = threading.Lock()

    def live(self, fingerprint: str) -> CacheEntry | None:
        """The prefix's cache if it has more than a few seconds left (reconciles once per process)."""
        if not self._reconciled:
            self.reconcile()
        entry = self._entries.get(fingerprint)
        if entry is None or entry.ttl_left(self.clock()) <= _SAFETY_S:
            return None
        return entry

    def reconcile(self) -> dict[str, CacheEntry]:
        """Read every ragcache cache of this model from ``caches.list`` (the latest-expiring wins)."""
        found: dict[str, CacheEntry] = {}
        for cached in self._caches().list(config={"page_size": 1000}):
            fingerprint = fingerprint_of(cached.display_name, self.namespace)
            if fingerprint is None or _model_id(cached.model) != self.model:
                continue
            entry = CacheEntry.from_sdk(cached, fingerprint)
            if fingerprint not in found or entry.expire_time > found[fingerprint].expire_time:
                found[fingerprint] = entry
        with self._lock:
            self._entries = found
            self._reconciled = True
        return dict(found)

    def create(self, fingerprint: str, body: dict[str, Any], ttl_s: float) -> CacheEntry:
        """``caches.create`` with the prefix (system instruction and contents inside the cache)."""
        config = {**body, "display_name": display_name(fingerprint, self.namespace), "ttl": _ttl(ttl_s)}
        cached = self._caches().create(model=self.model, config=config)
        return self._remember(CacheEntry.from_sdk(cached, fingerprint))

    def extend(self, entry: CacheEntry, ttl_s: float) -> CacheEntry:
        """``caches.update(ttl=…)``: the cache now expires ``ttl_s`` from now."""
        cached = self._caches().update(name=entry.name, config={"ttl": _ttl(ttl_s)})
        updated = CacheEntry.from_sdk(cached, entry.fingerprint)
        if not updated.tokens:
            updated = CacheEntry(updated.name, updated.fingerprint, updated.model, entry.tokens, updated.expire_time)
        return self._remember(updated)

    def forget(self, fingerprint: str) -> None:
        """Drop a cache Google no longer has (expired or deleted elsewhere)."""
        with self._lock:
            self._entries.pop(fingerprint, None)

    def retire(self, live_fingerprints: Iterable[str]) -> list[str]:
        """Delete every ragcache cache of this model whose prefix is not in ``live_fingerprints``."""
        keep = set(live_fingerprints)
        deleted = []
        for cached in self._caches().list(config={"page_size": 1000}):
            fingerprint = fingerprint_of(cached.display_name, self.namespace)
            if fingerprint is None or _model_id(cached.model) != self.model or fingerprint in keep:
                continue
            self._caches().delete(name=cached.name)
            deleted.append(str(cached.name))
            self.forget(fingerprint)
        return deleted

    def _remember(self, entry: CacheEntry) -> CacheEntry:
        with self._lock:
            self._entries[entry.fingerprint] = entry
        return entry


def _ttl(seconds: float) -> str:
    """A protobuf Duration as JSON wants it: ``"300s"``."""
    return f"{max(round(seconds), 1)}s"
