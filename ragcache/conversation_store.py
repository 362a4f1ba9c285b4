"""Where conversations are remembered between requests: this process, or Redis shared by every worker.

Values are the canonical JSON of :class:`~ragcache.conversation.Conversation`
(excerpts by chunk id), so the in-process store exercises exactly what a shared
one stores. A stateless chat's turns are keyed by a hash of its words so far; a
``/v1/ask`` session by its id. With ``conversation.store: redis://…`` any worker
continues any conversation with the same bytes (docs/deploy.md).
"""

from __future__ import annotations

import threading
from typing import Protocol

from cachetools import LRUCache

from ragcache.errors import BackendUnavailableError, ConfigError

__all__ = ["ConversationStore", "MemoryStore", "RedisStore", "create_store"]

KEY_PREFIX = "ragcache:conv:"


class ConversationStore(Protocol):
    """Strings by key; ``put`` replaces. Shared stores expire entries after their TTL."""

    shared: bool

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...

    def add(self, key: str, value: str) -> bool:
        """Store ``value`` only if ``key`` is absent; True when stored."""
        ...


class MemoryStore:
    """This process only, LRU-bounded."""

    shared = False

    def __init__(self, max_entries: int) -> None:
        self._entries: LRUCache[str, str] = LRUCache(max_entries)
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._entries[key] = value

    def add(self, key: str, value: str) -> bool:
        with self._lock:
            if key in self._entries:
                return False
            self._entries[key] = value
            return True


class RedisStore:
    """A Redis server shared by every worker; each entry expires ``ttl_s`` after its last write."""

    shared = True

    def __init__(self, url: str, ttl_s: int) -> None:
        try:
            import redis
        except ImportError as exc:
            raise ConfigError(
                f"conversation.store is {url!r} but the redis client is not installed: pip install 'ragcache[redis]'"
            ) from exc
        self._errors = (redis.RedisError,)
        self._client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
        self._where = _safe_url(url)
        self.ttl_s = ttl_s

    def get(self, key: str) -> str | None:
        try:
            return self._client.get(KEY_PREFIX + key)
        except self._errors as exc:
            raise self._down(exc) from exc

    def put(self, key: str, value: str) -> None:
        try:
            self._client.set(KEY_PREFIX + key, value, ex=self.ttl_s)
        except self._errors as exc:
            raise self._down(exc) from exc

    def add(self, key: str, value: str) -> bool:
        try:
            return bool(self._client.set(KEY_PREFIX + key, value, ex=self.ttl_s, nx=True))
        except self._errors as exc:
            raise self._down(exc) from exc

    def _down(self, exc: Exception) -> BackendUnavailableError:
        return BackendUnavailableError(f"conversation store {self._where} is unavailable: {exc}")


def _safe_url(url: str) -> str:
    """The URL without a password (it never reaches a log or an error)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def create_store(url: str | None, max_entries: int, ttl_s: int) -> ConversationStore:
    """The store a config names: None for this process, ``redis://`` / ``rediss://`` / ``unix://`` for Redis."""
    if url is None:
        return MemoryStore(max_entries)
    if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        return RedisStore(url, ttl_s)
    raise ConfigError(f"conversation.store: unsupported URL {_safe_url(url)!r}; use redis://host:port/db or null")
