"""Stateless chats (chat completions send the whole conversation each time) route O(1) turns
per request: the turns this process sent are re-rendered from memory, not routed again.

The corpus is a real build of the four-topic corpus with the real all-MiniLM-L6-v2 index,
routed by the real HybridRouter; the count wraps its ``route`` (a spy, nothing replaced).
The request flow is the server's (``server/stream.py``): ``session_from_history`` on the
conversation so far, then ``stream``'s ``prompt_for`` with the session's route.
"""

from __future__ import annotations

from typing import Any

import pytest
from router_corpus import build_topics

from ragcache.app import RagCache
from ragcache.backends.base import Capabilities
from ragcache.config import Config, RouterConfig
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.prompt import Message
from ragcache.router.policy import HybridRouter, context_budget, tail_reserve

CONFIG = RouterConfig(history_allowance=0, snippet_tokens=64, top_k=4)
OUT = 100
TURNS = [
    "How deep should tomato seeds be sown?",
    "How does a telescope magnify faint galaxies?",
    "What happens in the TCP three-way handshake?",
    "How long should bread dough be kneaded?",
    "When should roses be pruned?",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CompiledCorpus:
    return build_topics(tmp_path_factory.mktemp("history")).corpus


class CountingRouter:
    """The real router, counting how often it routes."""

    def __init__(self, router: HybridRouter) -> None:
        self.router = router
        self.calls = 0

    def route(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.router.route(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.router, name)


def make_rag(corpus: CompiledCorpus) -> tuple[RagCache, CountingRouter]:
    """One-block runs (so every turn has a tail of its own snippets); the backend is never called."""
    biggest = budget = max(corpus.block(b).tokens for b in corpus.category_block_ids())
    while budget - tail_reserve(budget, CONFIG.snippet_tokens) < biggest:  # the biggest fits, no two do
        budget += 1
    overhead = context_budget(corpus, CONFIG, Capabilities(context_window=0), OUT)
    router = CountingRouter(HybridRouter(corpus, CONFIG, Capabilities(context_window=budget - overhead), OUT))
    return RagCache(Config(), corpus, None, router), router  # type: ignore[arg-type]


def test_each_request_routes_only_its_new_turn_and_history_is_sent_as_before(corpus: CompiledCorpus) -> None:
    rag, router = make_rag(corpus)
    conversation: list[Message] = []  # what the client sends: its own words
    sent: list[Message] = []  # what the prompts carried: user turns with their snippets
    first_blocks = None
    for question in TURNS:
        router.calls = 0
        history, session = rag.session_from_history(conversation)
        prompt = rag.prompt_for(question, history=history, previous=session)
        assert router.calls == 1, f"turn {len(sent) // 2 + 1} routed {router.calls} times"
        assert history == tuple(sent)  # earlier turns byte for byte as they were sent
        first_blocks = first_blocks or prompt.route.block_ids
        assert prompt.route.block_ids == first_blocks  # the session keeps its first route
        sent += [Message("user", prompt.user_text), Message("assistant", "ok")]
        conversation += [Message("user", question), Message("assistant", "ok")]
    assert any(m.content != q for m, q in zip(sent[::2], TURNS, strict=True))  # turns did carry snippets

    other, other_router = make_rag(corpus)  # another worker: nothing remembered, routed once per turn
    history, session = other.session_from_history(conversation)
    assert history == tuple(sent) and session is not None and session.block_ids == first_blocks
    assert other_router.calls == len(TURNS)
    other_router.calls = 0
    assert other.session_from_history(conversation)[0] == tuple(sent) and other_router.calls == 0
