"""The shared conversation store against a REAL redis-server (the ``redis_url`` fixture).

Two RagCache instances stand for two server workers: each has its own router and its own
demand state; only Redis joins them. The corpus and router are real; planning never calls
a backend, so none is loaded.
"""

from __future__ import annotations

import itertools

import pytest
from router_corpus import build_topics

from ragcache.app import RagCache
from ragcache.backends.base import Capabilities
from ragcache.config import BackendConfig, Config, RouterConfig
from ragcache.conversation_store import KEY_PREFIX, RedisStore, create_store
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.errors import BackendUnavailableError
from ragcache.prompt import Message
from ragcache.router.policy import HybridRouter

ROUTER = RouterConfig(history_allowance=0, snippet_tokens=64)
QUESTIONS = [
    "How deep should tomato seeds be sown?",
    "And how often should I water them?",
    "What happens in the TCP three-way handshake?",
    "And what comes after it?",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CompiledCorpus:
    return build_topics(tmp_path_factory.mktemp("store")).corpus


def worker(corpus: CompiledCorpus, url: str) -> RagCache:
    config = Config(router=ROUTER, backend=BackendConfig(max_output_tokens=60), conversation={"store": url})
    router = HybridRouter(corpus, ROUTER, Capabilities(context_window=900), 60)
    return RagCache(config, corpus, None, router)  # type: ignore[arg-type]


def test_redis_store_keeps_values_with_a_ttl_and_add_is_atomic(redis_url: str) -> None:
    import redis

    store = create_store(redis_url, 10, ttl_s=120)
    assert isinstance(store, RedisStore) and store.shared
    store.put("k1", "v1")
    assert store.get("k1") == "v1" and store.get("missing") is None
    assert store.add("k2", "a") and not store.add("k2", "b") and store.get("k2") == "a"
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    assert 0 < raw.ttl(KEY_PREFIX + "k1") <= 120


def test_workers_sharing_redis_continue_each_others_turns_without_re_deriving(
    corpus: CompiledCorpus, redis_url: str
) -> None:
    a, b = worker(corpus, redis_url), worker(corpus, redis_url)
    words: list[Message] = []
    plans = []
    for turn, question in enumerate(QUESTIONS):
        serving = (a, b)[turn % 2]  # alternate workers, as a load balancer may
        plan = serving.plan_turn(question, history=words)
        assert plan.rederived == 0  # every earlier turn came from Redis
        plans.append(plan)
        words += [Message("user", question), Message("assistant", f"answer {turn}")]
    for before, plan in itertools.pairwise(plans):
        if plan.compaction is None:
            assert plan.history[: len(before.history) + 1] == (*before.history, Message("user", before.user_text))
    alone = worker(corpus, None)  # type: ignore[arg-type]  # no store: every earlier turn re-derived
    again = alone.plan_turn(QUESTIONS[-1], history=words[:-2])
    assert again.rederived == len(QUESTIONS) - 1 and again.history == plans[-1].history


def test_a_store_that_is_down_is_a_clear_backend_error_without_the_password() -> None:
    from vllm_harness import free_port

    store = create_store(f"redis://user:s3cret@127.0.0.1:{free_port()}/0", 10, ttl_s=60)
    with pytest.raises(BackendUnavailableError, match=r"conversation store redis://127\.0\.0\.1:\d+/0") as caught:
        store.get("k")
    assert "s3cret" not in str(caught.value)
