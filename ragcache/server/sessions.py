"""``/v1/ask`` session histories, kept in this worker process only.

Per process by design: with several workers a session lives where it was
started, so multi-worker deployments send history with chat completions. A
session is created explicitly (``new_session``); an id this worker does not know
is a 404 saying so, never a silent empty session that would drop the history
(docs/deploy.md).
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import OrderedDict

from ragcache.prompt import Message, Route
from ragcache.server.errors import APIError

__all__ = ["SessionStore"]


class SessionStore:
    """Histories (as sent) and routes by session id, LRU-bounded in sessions and in messages per session."""

    def __init__(self, max_sessions: int = 1024, max_messages: int = 64) -> None:
        self._sessions: OrderedDict[str, tuple[Message, ...]] = OrderedDict()
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self.max_sessions = max_sessions
        self.max_messages = max_messages

    def history(self, session_id: str) -> tuple[Message, ...]:
        with self._lock:
            return self._sessions.get(session_id, ())

    def open(self, session_id: str | None, *, new: bool = False) -> tuple[str | None, tuple[Message, ...]]:
        """The session a question belongs to and its history.

        ``new`` creates it (a fresh id when none is given; an id with history
        already is a 409); an unknown id without ``new`` is a 404 naming this
        worker, since the session may live in another one.
        """
        with self._lock:
            if new:
                session_id = session_id or f"s-{secrets.token_hex(12)}"
                if self._sessions.get(session_id):
                    raise APIError(
                        409,
                        f"session {session_id!r} already exists in this worker; omit new_session to continue it",
                        param="session_id",
                        code="session_exists",
                    )
                self._sessions[session_id] = ()
                self._evict()
                return session_id, ()
            if session_id is None:
                return None, ()
            if session_id not in self._sessions:
                raise APIError(
                    404,
                    f"session {session_id!r} is unknown to this worker (pid {os.getpid()}): /v1/ask sessions live "
                    "in the worker that created them and end when it restarts or evicts them. Start one with "
                    '"new_session": true, or send the history with /v1/chat/completions (stateless)',
                    param="session_id",
                    code="session_not_found",
                )
            self._sessions.move_to_end(session_id)
            return session_id, self._sessions[session_id]

    def route(self, session_id: str) -> Route | None:
        """The session's route (its first turn's blocks), which its later turns keep."""
        with self._lock:
            return self._routes.get(session_id)

    def append(self, session_id: str, sent: str, answer: str, route: Route | None = None) -> None:
        """Add one finished turn: ``sent`` is the user turn exactly as sent (snippets and question),
        so the next turn's history matches the cached KV; the oldest messages and sessions go first."""
        with self._lock:
            turns = (*self._sessions.pop(session_id, ()), Message("user", sent), Message("assistant", answer))
            self._sessions[session_id] = turns[-self.max_messages :]
            if route is not None:
                self._routes.setdefault(session_id, route)
            self._evict()

    def _evict(self) -> None:
        while len(self._sessions) > self.max_sessions:
            old, _ = self._sessions.popitem(last=False)
            self._routes.pop(old, None)
