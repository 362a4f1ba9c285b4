"""``/v1/ask`` sessions (server/sessions.py): created explicitly, kept as conversations in the
corpus's conversation store, and an id the store does not know is a clear OpenAI-shaped 404,
never a silent new session. The corpus and router are real; the backend is never called."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from router_corpus import build_topics

from ragcache.app import RagCache
from ragcache.backends.base import Capabilities
from ragcache.config import BackendConfig, Config, RouterConfig
from ragcache.router.policy import HybridRouter
from ragcache.server.errors import install_error_handlers
from ragcache.server.metrics import ServerMetrics
from ragcache.server.sessions import open_session, save_session


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> RagCache:
    corpus = build_topics(tmp_path_factory.mktemp("sessions")).corpus
    router_config = RouterConfig(history_allowance=0)
    router = HybridRouter(corpus, router_config, Capabilities(context_window=1400), 60)
    config = Config(router=router_config, backend=BackendConfig(max_output_tokens=60))
    return RagCache(config, corpus, None, router)  # type: ignore[arg-type]


def test_a_session_is_created_explicitly_then_continued(rag: RagCache) -> None:
    session_id, conversation = open_session(rag, "s-1", new=True)
    assert (session_id, conversation) == ("s-1", None)
    plan = rag.plan_turn("How deep should tomato seeds be sown?", conversation=conversation)
    save_session(rag, "s-1", plan.conversation.answered("A centimetre."))
    again, kept = open_session(rag, "s-1")
    assert again == "s-1" and kept is not None
    assert kept.history() == plan.conversation.answered("A centimetre.").history()
    generated, _ = open_session(rag, None, new=True)
    assert generated and generated.startswith("s-") and generated != "s-1"
    assert open_session(rag, None) == (None, None)  # no session: one stateless question


def test_unknown_and_duplicate_sessions_are_openai_shaped_errors(rag: RagCache) -> None:
    app = FastAPI()
    install_error_handlers(app, ServerMetrics())

    @app.post("/open")
    async def open_route(session_id: str, new: bool = False) -> dict:
        sid, conversation = open_session(rag, session_id, new=new)
        assert sid is not None
        plan = rag.plan_turn("Do they need sun?", conversation=conversation)
        save_session(rag, sid, plan.conversation.answered("Yes."))
        return {"session_id": sid, "turns": conversation.turns if conversation else 0}

    with TestClient(app, raise_server_exceptions=False) as client:
        unknown = client.post("/open", params={"session_id": "from-another-worker"})
        assert unknown.status_code == 404
        error = unknown.json()["error"]
        assert error["code"] == "session_not_found" and error["param"] == "session_id"
        assert "unknown to this worker" in error["message"] and "conversation.store" in error["message"]
        assert client.post("/open", params={"session_id": "s-2", "new": True}).status_code == 200
        assert client.post("/open", params={"session_id": "s-2"}).json()["turns"] == 1
        duplicate = client.post("/open", params={"session_id": "s-2", "new": True})
        assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "session_exists"
