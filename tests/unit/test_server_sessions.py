"""``/v1/ask`` sessions are worker-local (docs/deploy.md): created explicitly, and an
id this worker does not know is a clear OpenAI-shaped 404, never a silent new session."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ragcache.prompt import Message
from ragcache.server.errors import install_error_handlers
from ragcache.server.metrics import ServerMetrics
from ragcache.server.sessions import SessionStore


def test_a_session_is_created_explicitly_then_continued() -> None:
    store = SessionStore()
    session_id, history = store.open("s-1", new=True)
    assert (session_id, history) == ("s-1", ())
    store.append("s-1", "q?", "a.")
    assert store.open("s-1") == ("s-1", (Message("user", "q?"), Message("assistant", "a.")))
    generated, _ = store.open(None, new=True)
    assert generated and generated.startswith("s-") and generated != "s-1"
    assert store.open(None) == (None, ())  # no session: one stateless question


def test_unknown_and_duplicate_sessions_are_openai_shaped_errors() -> None:
    store = SessionStore()
    app = FastAPI()
    install_error_handlers(app, ServerMetrics())

    @app.post("/open")
    async def open_session(session_id: str, new: bool = False) -> dict:
        sid, history = store.open(session_id, new=new)
        store.append(sid, "q?", "a.")
        return {"session_id": sid, "turns": len(history)}

    with TestClient(app, raise_server_exceptions=False) as client:
        unknown = client.post("/open", params={"session_id": "from-another-worker"})
        assert unknown.status_code == 404
        error = unknown.json()["error"]
        assert error["code"] == "session_not_found" and error["param"] == "session_id"
        assert "unknown to this worker" in error["message"] and "new_session" in error["message"]
        assert client.post("/open", params={"session_id": "s-2", "new": True}).status_code == 200
        assert client.post("/open", params={"session_id": "s-2"}).json()["turns"] == 2
        duplicate = client.post("/open", params={"session_id": "s-2", "new": True})
        assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "session_exists"
