"""Ten turns of one conversation over corpora/sqlite through the REST endpoint, on the default
local backend and its 8k window, sent as stateless chat front ends send them (the official
openai SDK, the whole history with every request; ``ragcache.bench.chat_turns`` is the client).

corpora/sqlite does not fit the window, so every turn carries excerpts after the history: the
issue's failure was turn 2 refused for 12,393 tokens. Here every turn is answered within the
window; from turn 2 every turn that was not compacted reads the whole previous prompt from the
cache (>= 0.85 of its prompt); compactions are counted in the answers and in /metrics.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from server_harness import free_port, metric_value, serve_command

from ragcache.bench.chat_turns import QUESTIONS, check, rest_turns
from ragcache.bench.loadserver import RunningServer, launch

ROOT = Path(__file__).resolve().parents[2]
KEY = "conversation-key"
WINDOW = 8192  # SmolLM2's context window, the local backend's


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``ragcache serve`` over a fresh build of corpora/sqlite (with its router index), no warm-up."""
    from ragcache.config import RouterConfig
    from ragcache.corpus.compile import build_corpus
    from ragcache.router.index import index_step

    tmp = tmp_path_factory.mktemp("conversation-rest")
    build = tmp / "build"
    build_corpus(ROOT / "corpora" / "sqlite", build, steps=(index_step(RouterConfig().embedding_model),))
    config = {
        "corpus": str(ROOT / "corpora" / "sqlite"),
        "build_dir": str(build),
        "backend": {"kind": "local", "max_output_tokens": 32},
        "cache": {"warm_on_start": False, "keep_warm": False, "traffic_dir": str(tmp / "traffic")},
    }
    path = tmp / "server.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "RAGCACHE_API_KEYS": KEY, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    server = launch(serve_command(path, port), port, KEY, tmp / "server.log", env=env, cwd=tmp, timeout_s=900)
    try:
        yield server
    finally:
        server.stop()


def test_ten_turns_over_a_corpus_larger_than_the_window(sqlite_server: RunningServer) -> None:
    records = list(rest_turns(sqlite_server.base_url, KEY, "sqlite", list(QUESTIONS), max_tokens=32))
    assert len(records) == 10 and not [r.error for r in records if r.error], records
    assert all(r.prompt_tokens + 32 <= WINDOW for r in records)
    assert check(records, min_cached=0.85) == []  # every turn but compacted ones reads its history from cache
    routes = [r.route for r in records]
    # sqlite does not fit 8k: never the whole corpus; a run of blocks where its cache pays (the local engine
    # reads a warm prefix for nothing), else top-k excerpts
    assert set(routes) <= {"blocks", "topk"}, routes
    compacted = sum(r.compacted for r in records)
    for before, turn in itertools.pairwise(records):
        if not turn.compacted:
            assert turn.cached_tokens >= before.prompt_tokens - 16  # the previous prompt, re-sent byte for byte
    metrics = httpx.get(sqlite_server.base_url + "/metrics", timeout=30).text
    assert metric_value(metrics, "ragcache_conversation_compactions_total", corpus="sqlite") == compacted
    assert metric_value(metrics, "ragcache_conversation_rederived_turns_total") == 0  # one worker remembers
