"""Two ``ragcache serve`` workers in front of one REAL vLLM server, a stateless chat alternating
between them turn by turn: every turn reads the previous turn's prompt from vLLM's prefix cache,
as it does with one worker, because each worker re-renders the earlier turns byte for byte.

Three runs of the same five questions, each with its own session context (a system message,
which sits after the corpus, so the runs never share history KV): one worker; two workers that
share a REAL redis-server (``conversation.store``, no turn re-derived); two workers with no
shared store (each re-derives the turns the other served, from the words). The corpus is
corpora/small with a per-run first line in its instructions, routed in a 4,000-token window
so it does not fit whole: every turn carries excerpts after the history.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from server_harness import free_port, metric_value, serve_command
from vllm_harness import fresh_small_corpus

from ragcache.bench.loadserver import RunningServer, launch

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[2]
KEY = "workers-key"
BLOCK = 128  # vLLM's KV block on CPU: cached tokens come in whole blocks
QUESTIONS = [
    "What are the storage classes of SQLite?",
    "And which one holds a floating point value?",
    "Why should AUTOINCREMENT usually be avoided?",
    "What does ROWID have to do with it?",
    "How does zero-configuration work?",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_small_corpus(tmp_path_factory.mktemp("workers") / "small")


def start_workers(tmp: Path, corpus: Path, vllm_url: str, store: str | None, count: int) -> list[RunningServer]:
    config = {
        "corpus": str(corpus),
        "backend": {"kind": "vllm", "model": "smollm2", "base_url": vllm_url, "max_output_tokens": 24,
                    "context_window": 8192},
        "router": {"window_tokens": 4000},
        "cache": {"warm_on_start": False, "keep_warm": False, "traffic_dir": str(tmp / "traffic")},
        "conversation": {"store": store},
    }  # fmt: skip
    path = tmp / "workers.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "RAGCACHE_API_KEYS": KEY, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    servers: list[RunningServer] = []
    try:
        for n in range(count):
            port = free_port()
            log = tmp / f"worker-{n}.log"
            servers.append(launch(serve_command(path, port), port, KEY, log, env=env, cwd=tmp, timeout_s=600))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


@pytest.fixture
def workers(tmp_path: Path, corpus: Path, vllm_server, request: pytest.FixtureRequest) -> Iterator[list]:
    store, count = request.param
    url = request.getfixturevalue("redis_url") if store == "redis" else None
    servers = start_workers(tmp_path, corpus, vllm_server.url, url, count)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def converse(servers: list[RunningServer], context: str) -> list[tuple[int, int, dict]]:
    """The questions as a stateless client sends them, turn n to worker n mod len(servers):
    (prompt tokens, cached tokens, the answer's ``ragcache`` object) per turn."""
    clients = [openai.OpenAI(base_url=s.base_url + "/v1", api_key=KEY, max_retries=0, timeout=600) for s in servers]
    messages = [{"role": "system", "content": context}]
    turns = []
    for n, question in enumerate(QUESTIONS):
        messages.append({"role": "user", "content": question})
        reply = clients[n % len(clients)].chat.completions.create(model="small", messages=messages, max_tokens=24)
        messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
        usage = reply.usage
        assert usage is not None and usage.prompt_tokens_details is not None
        info = (reply.model_extra or {})["ragcache"]
        turns.append((usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens or 0, info))
    return turns


def assert_each_turn_reads_the_previous_one(turns: list[tuple[int, int, dict]]) -> list[float]:
    """Every turn after the first that was not compacted read the whole previous prompt; their shares."""
    kept = []
    for (before, _, _), (prompt, cached, info) in itertools.pairwise(turns):
        assert info["route"]["snippets"], info["route"]  # the turn did carry excerpts after the history
        if info["conversation"]["compacted"] is None:
            assert cached >= before // BLOCK * BLOCK, (before, prompt, cached)  # the previous prompt was a hit
            kept.append(cached / prompt)
    assert len(kept) >= 3, turns  # the window leaves room for most of the five turns
    return kept


@pytest.mark.parametrize(
    "workers", [("memory", 1), ("redis", 2), ("memory", 2)], indirect=True, ids=["one", "two-redis", "two-rederive"]
)
def test_alternating_workers_keep_every_turn_cached(workers: list[RunningServer], request) -> None:
    turns = converse(workers, f"Conversation {request.node.callspec.id} {uuid.uuid4().hex[:8]}.")
    shares = assert_each_turn_reads_the_previous_one(turns)
    assert min(shares) >= 0.75, shares
    metrics = [httpx.get(w.base_url + "/metrics", timeout=30).text for w in workers]
    rederived = sum(metric_value(text, "ragcache_conversation_rederived_turns_total") for text in metrics)
    if len(workers) == 1 or request.node.callspec.id == "two-redis":
        assert rederived == 0  # the turns came from this worker's memory or from Redis
    else:
        assert rederived >= len(QUESTIONS) - 1  # each worker re-derived the turns the other one served
