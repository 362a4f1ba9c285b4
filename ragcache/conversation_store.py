"""Where conversations are remembered between requests: this process, or Redis shared by every worker.

:class:`Conversations` plans turns through the
:class:`~ragcache.conversation.ConversationPlanner` and keeps each one in a store.
Values are the canonical JSON of :class:`~ragcache.conversation.Conversation`
(excerpts by chunk id), so the in-process store exercises exactly what a shared
one stores. A stateless chat's turns are keyed by a hash of its words so far
(:func:`turn_key`); a ``/v1/ask`` session by its id. With ``conversation.store:
redis://…`` any worker continues any conversation with the same bytes (docs/deploy.md).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from cachetools import LRUCache

from ragcache.conversation import Conversation, ConversationPlanner, TurnPlan
from ragcache.errors import BackendUnavailableError, ConfigError
from ragcache.hashing import canonical_json, content_hash
from ragcache.prompt import Message, Snippet

__all__ = ["ConversationStore", "Conversations", "MemoryStore", "RedisStore", "create_store", "turn_key"]

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


def turn_key(fingerprint: str, settings: str, context: str | None, messages: Sequence[Message]) -> str:
    """The store key of a stateless conversation's turn: its corpus build, planner settings and words so far."""
    body = [fingerprint, settings, context, [[m.role, m.content] for m in messages]]
    return "turn:" + content_hash(canonical_json(body))


class Conversations:
    """Turns of every conversation over one corpus: planned once, remembered in a store, re-derived on a miss."""

    def __init__(self, planner: ConversationPlanner, store: ConversationStore) -> None:
        self.planner = planner
        self.store = store
        self._chunks = {c.id: Snippet(c.id, c.doc_id, c.text, 0.0, c.tokens) for c in planner.corpus.chunks}
        settings = planner.settings.model_dump(exclude={"store", "max_conversations", "store_ttl_s"})
        self._settings_key = canonical_json({**settings, "window": planner.window, "out": planner.reserved_output})

    @property
    def fingerprint(self) -> str:
        return self.planner.corpus.fingerprint

    def plan(
        self, conversation: Conversation | None, question: str, *, context: str | None = None, observe: bool = True
    ) -> TurnPlan:
        """The next turn of a conversation held by the caller (``RagCache.session``, ``/v1/ask`` sessions)."""
        return self.planner.plan(conversation, question, context=context, observe=observe)

    def plan_stateless(
        self, history: Sequence[Message], question: str, *, context: str | None = None, observe: bool = True
    ) -> TurnPlan:
        """The next turn of a conversation a client sends whole (its own words and the answers it got).

        Earlier turns come from the store; a turn it does not hold (another worker without a
        shared store, a restart, an evicted turn) is re-derived from the words, without
        counting demand.
        """
        words = [m for m in history if m.role in ("user", "assistant")]
        users = [i for i, m in enumerate(words) if m.role == "user"]
        conversation, start = None, 0
        for n in range(len(users) - 1, -1, -1):  # the latest remembered turn
            conversation = self._load(turn_key(self.fingerprint, self._settings_key, context, words[: users[n] + 1]))
            if conversation is not None:
                start = n + 1
                conversation = self._with_answer(conversation, words, users, n)
                break
        for n in range(start, len(users)):  # re-derive the turns nobody remembers
            plan = self.planner.plan(conversation, words[users[n]].content, context=context, observe=False)
            self._save(turn_key(self.fingerprint, self._settings_key, context, words[: users[n] + 1]), plan)
            conversation = self._with_answer(plan.conversation, words, users, n)
        plan = self.planner.plan(conversation, question, context=context, observe=observe)
        self._save(turn_key(self.fingerprint, self._settings_key, context, [*words, Message("user", question)]), plan)
        return replace(plan, rederived=len(users) - start)

    def load_session(self, key: str) -> Conversation | None:
        """A server-held conversation (``/v1/ask`` sessions) by key."""
        return self._load(key)

    def save_session(self, key: str, conversation: Conversation) -> None:
        self.store.put(key, conversation.to_json(self.fingerprint))

    def _load(self, key: str) -> Conversation | None:
        text = self.store.get(key)
        return None if text is None else Conversation.from_json(text, self.planner.corpus, self._chunks)

    def _save(self, key: str, plan: TurnPlan) -> None:
        self.store.put(key, plan.conversation.to_json(self.fingerprint))

    @staticmethod
    def _with_answer(conversation: Conversation, words: list[Message], users: list[int], n: int) -> Conversation:
        """The turn after user message ``n`` answered as the client says (empty when it sent no answer)."""
        following = words[users[n] + 1] if users[n] + 1 < len(words) else None
        answer = following.content if following is not None and following.role == "assistant" else ""
        return conversation.answered(answer)
