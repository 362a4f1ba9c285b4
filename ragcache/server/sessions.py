"""``/v1/ask`` session histories, kept in this worker process only.

Per process by design: with several workers a session lives where it was
started, so multi-worker deployments send history with chat completions.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ragcache.prompt import Message

__all__ = ["SessionStore"]


class SessionStore:
    """Histories by session id, LRU-bounded in sessions and in messages per session."""

    def __init__(self, max_sessions: int = 1024, max_messages: int = 64) -> None:
        self._sessions: OrderedDict[str, tuple[Message, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_sessions = max_sessions
        self.max_messages = max_messages

    def history(self, session_id: str) -> tuple[Message, ...]:
        with self._lock:
            return self._sessions.get(session_id, ())

    def append(self, session_id: str, question: str, answer: str) -> None:
        """Add one finished turn; the oldest messages and sessions go first."""
        with self._lock:
            turns = (*self._sessions.pop(session_id, ()), Message("user", question), Message("assistant", answer))
            self._sessions[session_id] = turns[-self.max_messages :]
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
