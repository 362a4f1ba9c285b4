"""Fault: the backend is down when ``ragcache serve`` starts.

The config points the ``vllm`` and ``openai`` backends at a loopback port
nobody listens on (a real refused connection, no fake). The process must stay
alive (/healthz 200), say why it is not ready (/readyz 503 naming the backend,
its URL and the failure), and answer requests with 503 ``backend_unavailable``
in OpenAI's error shape, streamed or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fault_harness import assert_openai_error, closed_port, serve, tiny_corpus, wait_readyz, write_config
from server_harness import ServerProcess

QUESTION = [{"role": "user", "content": "What is fact0-1?"}]


@pytest.fixture(scope="module", params=["vllm", "openai"])
def down_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    from ragcache.corpus.compile import build_corpus

    tmp = tmp_path_factory.mktemp(f"down-{request.param}")
    corpus = tiny_corpus(tmp / "tiny")
    build_corpus(corpus, tmp / "build")
    url = f"http://127.0.0.1:{closed_port()}"
    backend = {
        "kind": request.param,
        "model": "smollm2",
        "max_output_tokens": 16,
        "context_window": 2048,
        "base_url": url if request.param == "vllm" else url + "/v1",
        "api_key_env": "FAULTS_UNUSED_KEY",
    }
    server = serve(write_config(tmp / "serve.yaml", corpus, tmp / "build", backend), tmp / "serve.log")
    try:
        yield server, url
    finally:
        server.stop()


def test_readyz_names_the_backend_and_the_failure(down_server: tuple[ServerProcess, str]) -> None:
    server, url = down_server
    ready = wait_readyz(server, timeout_s=60)
    assert ready.status_code == 503, ready.text
    state = ready.json()["corpora"]["tiny"]
    assert state.startswith("failed:"), state
    assert url in state and "cannot connect" in state, state
    assert httpx.get(server.base_url + "/healthz", timeout=5).json() == {"status": "ok"}


def test_requests_get_503_backend_unavailable(down_server: tuple[ServerProcess, str]) -> None:
    server, url = down_server
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=4)
    assert caught.value.status_code == 503
    error = assert_openai_error(caught.value.response.json(), "backend_unavailable")
    assert error["type"] == "server_error" and url in error["message"]

    streamed = httpx.post(
        server.base_url + "/v1/chat/completions",
        timeout=60,
        json={"model": "tiny", "messages": QUESTION, "max_tokens": 4, "stream": True},
    )
    assert streamed.status_code == 503
    assert_openai_error(streamed.json(), "backend_unavailable")
    assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
    assert server.process.poll() is None


def test_build_is_untouched_by_a_down_backend(down_server: tuple[ServerProcess, str]) -> None:
    """The corpus side still answers: /v1/models and /v1/corpora list the corpus, not ready."""
    server, _ = down_server
    models = httpx.get(server.base_url + "/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert Path(server.log_path).read_text().count("Traceback") == 0


def test_bad_text_is_a_400_before_any_backend(down_server: tuple[ServerProcess, str]) -> None:
    """Issue 27 item 1, for the vLLM and OpenAI backends (down here): the text is refused before routing,
    so the answer is the 400 naming the field, not the backend's 503 (nor a 500)."""
    server, _ = down_server
    for content, what in (("why \ud800?", "lone surrogate"), ("nul \x00 here", "NUL")):
        body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 4}
        for stream in (False, True):
            reply = httpx.post(server.base_url + "/v1/chat/completions", timeout=60,  # JSON with "\ud800" escapes
                               content=json.dumps({**body, "stream": stream}),
                               headers={"Content-Type": "application/json"})  # fmt: skip
            assert reply.status_code == 400, reply.text
            error = assert_openai_error(reply.json(), "invalid_text")
            assert error["param"] == "messages.0.content" and what in error["message"], error
