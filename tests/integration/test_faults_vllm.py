"""Fault: the vLLM replica is SIGKILLed in the middle of a streamed answer.

A dedicated vLLM CPU server (SmolLM2, small context) is started for this file
only, in its own process group, so killing it never touches the suite's shared
server (tests/integration/conftest.py). ``ragcache serve`` talks to it through
the ``vllm`` backend; the test streams a long answer, kills the whole replica
(``killpg(SIGKILL)``: API server and engine core) after the first deltas, and
checks what the client and the next client see.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fault_harness import assert_openai_error, serve, tiny_corpus, wait_readyz, write_config
from server_harness import ServerProcess
from vllm_harness import SCRIPT, VllmServer, free_port, install, stop, wait_healthy

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[2]
ERROR_EVENT_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VllmServer, subprocess.Popen[bytes]]]:
    """One small vLLM server of our own (max-model-len 4096, 1 GiB KV), killed by the test."""
    from ragcache.models import ensure_model

    logs = tmp_path_factory.mktemp("vllm-fault")
    reason = install(logs / "install.log")
    if reason is not None:
        pytest.skip(reason)
    server = VllmServer(free_port(), logs / "server.log")
    env = {
        **os.environ,
        "VLLM_MAX_MODEL_LEN": "4096",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_MODEL_PATH": str(ensure_model()),
    }
    with server.log.open("w") as out:
        process = subprocess.Popen(
            ["bash", str(SCRIPT), str(server.port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(server, process)
        yield server, process
    finally:
        stop(process)


@pytest.fixture(scope="module")
def front(
    replica: tuple[VllmServer, subprocess.Popen[bytes]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    from ragcache.corpus.compile import build_corpus

    tmp = tmp_path_factory.mktemp("front")
    corpus = tiny_corpus(tmp / "tiny")
    build_corpus(corpus, tmp / "build")
    backend = {
        "kind": "vllm",
        "model": "smollm2",
        "base_url": replica[0].url,
        "max_output_tokens": 300,
        "context_window": 4096,
        "options": {"retry_down_s": 600},
    }
    server = serve(write_config(tmp / "serve.yaml", corpus, tmp / "build", backend), tmp / "serve.log")
    try:
        ready = wait_readyz(server, timeout_s=300)
        assert ready.status_code == 200, ready.text
        yield server
    finally:
        server.stop()


def test_replica_killed_mid_stream(replica: tuple[VllmServer, subprocess.Popen[bytes]], front: ServerProcess) -> None:
    body = {
        "model": "tiny",
        "stream": True,
        "max_tokens": 300,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}],
    }
    deltas: list[str] = []
    last: dict | None = None
    killed_at = None
    with httpx.stream("POST", front.base_url + "/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            assert data != "[DONE]", f"the stream finished before the kill: {''.join(deltas)!r}"
            last = json.loads(data)
            if "error" in last:
                break
            deltas += [c["delta"].get("content") or "" for c in last["choices"]]
            if killed_at is None and sum(map(len, deltas)) >= 8:
                os.killpg(replica[1].pid, signal.SIGKILL)
                killed_at = time.monotonic()
    assert killed_at is not None, "no deltas arrived before the stream ended"
    elapsed = time.monotonic() - killed_at
    assert last is not None and "error" in last, f"the stream ended without an error event: {last}"
    error = assert_openai_error(last, "backend_unavailable")
    assert error["type"] == "server_error"
    assert elapsed < ERROR_EVENT_WITHIN_S, f"error event {elapsed:.1f} s after the kill"
    replica[1].wait(timeout=30)

    assert httpx.get(front.base_url + "/healthz", timeout=5).status_code == 200
    started = time.monotonic()
    after = httpx.post(
        front.base_url + "/v1/chat/completions", timeout=60, json={**body, "stream": False, "max_tokens": 4}
    )
    assert after.status_code == 503, after.text
    message = assert_openai_error(after.json(), "backend_unavailable")["message"]
    assert replica[0].url in message
    assert time.monotonic() - started < ERROR_EVENT_WITHIN_S
    streamed = httpx.post(front.base_url + "/v1/chat/completions", timeout=60, json={**body, "max_tokens": 4})
    assert streamed.status_code == 503, streamed.text  # no output yet: a plain HTTP error, not an SSE event
    assert_openai_error(streamed.json(), "backend_unavailable")
    assert front.process.poll() is None, "ragcache serve exited"
