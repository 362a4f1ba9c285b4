"""``/v1/ask`` sessions: a conversation the server keeps under an id.

A session is created explicitly (``new_session``) and lives in its corpus's
conversation store (``RagCache.conversations``): this worker's memory by default,
or Redis when ``conversation.store`` is set, so any worker continues it with the
same bytes (docs/deploy.md). An id the store does not know is a 404 saying so,
never a silent empty session that would drop the history. A session of an
earlier build of the corpus starts over on the new build.
"""

from __future__ import annotations

import os
import secrets

from ragcache.app import RagCache
from ragcache.conversation import Conversation
from ragcache.server.errors import APIError

__all__ = ["open_session", "save_session"]

_EMPTY = "{}"  # a created session with no turn yet


def _key(session_id: str) -> str:
    return f"session:{session_id}"


def open_session(rag: RagCache, session_id: str | None, *, new: bool = False) -> tuple[str | None, Conversation | None]:
    """The session a question belongs to and its conversation so far (None: no turn yet).

    ``new`` creates it (a fresh id when none is given; an existing id is a 409); an
    unknown id without ``new`` is a 404.
    """
    conversations = rag.conversations
    if new:
        session_id = session_id or f"s-{secrets.token_hex(12)}"
        if not conversations.store.add(_key(session_id), _EMPTY):
            raise APIError(
                409,
                f"session {session_id!r} already exists; omit new_session to continue it",
                param="session_id",
                code="session_exists",
            )
        return session_id, None
    if session_id is None:
        return None, None
    text = conversations.store.get(_key(session_id))
    if text is None:
        where = "the shared conversation store" if conversations.store.shared else f"this worker (pid {os.getpid()})"
        raise APIError(
            404,
            f"session {session_id!r} is unknown to {where}: it was never created, expired or was evicted"
            + ("" if conversations.store.shared else ", or lives in another worker (set conversation.store)")
            + '. Start one with "new_session": true, or send the history with /v1/chat/completions (stateless)',
            param="session_id",
            code="session_not_found",
        )
    return session_id, conversations.load_session(_key(session_id))


def save_session(rag: RagCache, session_id: str, conversation: Conversation) -> None:
    """Keep the conversation after a finished turn."""
    rag.conversations.save_session(_key(session_id), conversation)
