"""``preload`` (server/corpora.py) makes the conversation planner before any request: the corpus's
tokenizer loads under a lock, so the first chat turns of a busy server would all wait for it (issue 25).
The corpus and router are real; the backend is never called."""

from __future__ import annotations

from pathlib import Path

from router_corpus import build_topics

from ragcache.app import RagCache
from ragcache.backends.base import Capabilities
from ragcache.config import BackendConfig, Config, RouterConfig
from ragcache.router.policy import HybridRouter
from ragcache.server.corpora import preload


def test_preload_makes_the_conversation_planner_before_the_first_turn(tmp_path: Path) -> None:
    corpus = build_topics(tmp_path).corpus
    router_config = RouterConfig(history_allowance=0)
    router = HybridRouter(corpus, router_config, Capabilities(context_window=1400), 60)
    rag = RagCache(Config(router=router_config, backend=BackendConfig(max_output_tokens=60)), corpus, None, router)  # type: ignore[arg-type]
    assert rag._conversations is None  # made on first use, unless preloaded
    preload(rag)
    assert rag._conversations is not None
    made = rag._conversations
    rag.plan_turn("How deep should tomato seeds be sown?")
    assert rag.conversations is made  # the turn used the preloaded planner, not a new one
