"""``/v1/ask`` session histories, kept in this worker process only.

Per process by design: with several workers a session lives where it was
started, so multi-worker deployments send history with chat completions.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ragcache.prompt import Message, Route

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
            while len(self._sessions) > self.max_sessions:
                old, _ = self._sessions.popitem(last=False)
                self._routes.pop(old, None)
