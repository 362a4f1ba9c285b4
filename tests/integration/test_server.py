"""The real REST server (uvicorn, local model, compiled corpora/small) through
the official ``openai`` SDK and plain HTTP: answers, streaming, cached tokens,
bad inputs answered in the OpenAI error shape, and a client that disconnects
mid-stream stopping its generation.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from server_harness import ServerProcess, metric_value

QUESTION = "Does SQLite need a separate server process?"


@pytest.fixture(scope="module")
def client(ragcache_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=ragcache_server.base_url + "/v1", api_key=ragcache_server.api_key, max_retries=0, timeout=300
    )


@pytest.fixture(scope="module")
def http(ragcache_server: ServerProcess) -> httpx.Client:
    headers = {"Authorization": f"Bearer {ragcache_server.api_key}"}
    with httpx.Client(base_url=ragcache_server.base_url, headers=headers, timeout=300) as session:
        yield session


def ask(client: openai.OpenAI, question: str = QUESTION, **kw: Any) -> Any:
    messages = kw.pop("messages", None) or [{"role": "user", "content": question}]
    return client.chat.completions.create(model="small", messages=messages, max_tokens=kw.pop("max_tokens", 12), **kw)


def assert_still_serving(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["small"]
    assert ask(client, max_tokens=2).choices[0].message.content is not None


def test_models_lists_the_corpora(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["small"]
    assert models[0].owned_by == "ragcache"


def test_non_streaming_answer_carries_usage_route_and_sources(client: openai.OpenAI) -> None:
    response = ask(client)
    assert response.object == "chat.completion"
    assert response.model == "small"
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content.strip()
    assert response.usage.prompt_tokens > 1000  # the whole small corpus is in the prompt
    assert 0 < response.usage.completion_tokens <= 12
    extra = response.model_extra["ragcache"]
    assert extra["corpus"] == "small"
    assert extra["backend"] == "local"
    assert extra["route"]["mode"] in {"full", "blocks", "topk"}
    assert extra["route"]["blocks"]
    assert isinstance(extra["sources"], list)
    assert extra["cost_usd"] == 0.0 and extra["saved_usd"] == 0.0  # self-hosted: priced, at zero


def test_second_request_reports_cached_tokens(client: openai.OpenAI) -> None:
    first = ask(client, "What are the storage classes of SQLite?")
    second = ask(client, "What are the storage classes of SQLite?")
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached > 1000, f"expected the corpus prefix from the cache, got {cached} of {second.usage.prompt_tokens}"
    assert cached >= first.usage.prompt_tokens_details.cached_tokens
    assert second.model_extra["ragcache"]["cached_ratio"] > 0.5


def test_system_message_goes_after_the_corpus(client: openai.OpenAI) -> None:
    """A client system prompt must not break the cached corpus prefix."""
    messages = [
        {"role": "system", "content": "Answer like a pirate. Request 7f3a9c."},
        {"role": "user", "content": "Is SQLite serverless?"},
        {"role": "assistant", "content": "Yes."},
        {"role": "user", "content": "Why does that matter?"},
    ]
    response = ask(client, messages=messages)
    assert response.choices[0].message.content.strip()
    assert response.usage.prompt_tokens_details.cached_tokens > 1000


def test_streaming_answer_with_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].model_extra["ragcache"]["route"]["blocks"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.prompt_tokens_details.cached_tokens > 1000
    assert 0 < usage.completion_tokens <= 12


def test_a_chat_completion_carries_everything_it_needs(client: openai.OpenAI) -> None:
    """Stateless across workers and replicas (docs/deploy.md): a later turn sent with its
    history is answered with that history, by a server that never saw the earlier turns."""
    history = [
        {"role": "system", "content": "The user is called Ada."},
        {"role": "user", "content": "What is SQLite?"},
        {"role": "assistant", "content": "An embedded SQL database engine."},
    ]
    alone = ask(client, "And is it serverless?", max_tokens=2)
    later = ask(client, messages=[*history, {"role": "user", "content": "And is it serverless?"}], max_tokens=2)
    assert later.usage.prompt_tokens > alone.usage.prompt_tokens + 10  # context and history came in the request
    assert later.usage.prompt_tokens_details.cached_tokens > 1000  # on the same cached corpus prefix


def test_native_ask_with_a_session(http: httpx.Client) -> None:
    unknown = http.post("/v1/ask", json={"question": QUESTION, "session_id": "s-1", "max_tokens": 8})
    assert unknown.status_code == 404  # never a silent empty session: it may live in another worker
    assert unknown.json()["error"]["code"] == "session_not_found"
    assert "unknown to this worker" in unknown.json()["error"]["message"]
    body = {"question": QUESTION, "session_id": "s-1", "new_session": True, "max_tokens": 8}
    first = http.post("/v1/ask", json=body)
    assert first.status_code == 200, first.text
    second = http.post("/v1/ask", json={"question": "And why?", "session_id": "s-1", "max_tokens": 8})
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["answer"].strip() and body["session_id"] == "s-1"
    assert body["usage"]["input_tokens"] > first.json()["usage"]["input_tokens"]  # history came along
    assert body["route"]["blocks"] and body["usage"]["cached_tokens"] > 0


def test_corpora_endpoints(http: httpx.Client) -> None:
    listing = http.get("/v1/corpora").json()["data"]
    assert [c["name"] for c in listing] == ["small"]
    detail = http.get("/v1/corpora/small").json()
    assert {b["id"] for b in detail["blocks"]} >= {"category:overview", "category:datatypes", "category:faq"}
    assert detail["ready"] is True and detail["prefixes"]
    missing = http.get("/v1/corpora/nope")
    assert missing.status_code == 404 and "small" in missing.json()["error"]["message"]


def test_probes(ragcache_server: ServerProcess) -> None:
    assert httpx.get(ragcache_server.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(ragcache_server.base_url + "/readyz")
    assert ready.status_code == 200 and ready.json()["corpora"] == {"small": "ready"}
    metrics = httpx.get(ragcache_server.base_url + "/metrics").text
    assert metric_value(metrics, "ragcache_requests_total", corpus="small", backend="local") >= 1
    assert metric_value(metrics, "ragcache_cached_tokens_total") > 0
    assert metric_value(metrics, "ragcache_ttft_seconds_count") >= 1


# --- bad inputs: right status, clear message, server keeps serving -------------


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_malformed_json(http: httpx.Client, client: openai.OpenAI) -> None:
    response = http.post(
        "/v1/chat/completions",
        content=b'{"model": "small", "messages": [',
        headers={"Content-Type": "application/json"},
    )
    error = error_of(response, 400)
    assert error["code"] == "invalid_json" and "malformed JSON" in error["message"]
    assert_still_serving(client)


def test_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    error = caught.value.body
    assert error["code"] == "model_not_found"
    assert "'gpt-9' does not exist" in error["message"] and "small" in error["message"]
    assert_still_serving(client)


def test_missing_messages(http: httpx.Client, client: openai.OpenAI) -> None:
    error = error_of(http.post("/v1/chat/completions", json={"model": "small"}), 400)
    assert error["param"] == "messages" and "missing required parameter: 'messages'" in error["message"]
    assert_still_serving(client)


def test_ten_megabyte_body(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client, "x" * 10_000_000)
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"
    assert "server.max_body_bytes" in caught.value.body["message"]
    assert_still_serving(client)


def test_prompt_over_the_context_window(client: openai.OpenAI) -> None:
    long_question = "Explain this: " + " ".join(f"word{i}" for i in range(20_000))  # ~60k tokens, 170 kB
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, long_question)
    assert caught.value.status_code == 400
    assert caught.value.body["code"] == "context_length_exceeded"  # README: context too long → 400
    assert "context window" in caught.value.body["message"]
    assert_still_serving(client)


def test_history_over_the_limit(client: openai.OpenAI) -> None:
    turns = [{"role": r, "content": "hi"} for _ in range(5) for r in ("user", "assistant")]
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, messages=[*turns, {"role": "user", "content": QUESTION}])
    assert caught.value.body["code"] == "history_too_long"
    assert "max_history_messages" in caught.value.body["message"]


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_wrong_api_key(ragcache_server: ServerProcess, client: openai.OpenAI, key: str | None) -> None:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    response = httpx.post(
        ragcache_server.base_url + "/v1/chat/completions",
        headers=headers,
        json={"model": "small", "messages": [{"role": "user", "content": "hi"}]},
    )
    error = error_of(response, 401)
    assert error["code"] == ("missing_api_key" if key is None else "invalid_api_key")
    assert "Authorization: Bearer" in error["message"]
    assert key is None or key not in response.text  # keys are never echoed
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=ragcache_server.base_url + "/v1", api_key="wrong-key", max_retries=0).models.list()
    assert_still_serving(client)


# --- a client that disconnects mid-stream --------------------------------------


def scrape(server: ServerProcess) -> str:
    return httpx.get(server.base_url + "/metrics", timeout=30).text


def test_disconnect_mid_stream_stops_the_generation(ragcache_server: ServerProcess, client: openai.OpenAI) -> None:
    before = metric_value(scrape(ragcache_server), "ragcache_generations_cancelled_total", reason="client_disconnect")
    stream = client.chat.completions.create(
        model="small",
        stream=True,
        max_tokens=2000,
        temperature=1.0,
        seed=7,
        messages=[{"role": "user", "content": "Write a very long essay about every SQLite datatype, with examples."}],
    )
    received = []
    for chunk in stream:
        assert not (chunk.choices and chunk.choices[0].finish_reason), "the answer ended before the disconnect"
        received.append(chunk)
        if len(received) >= 4:
            break
    stream.close()  # the client goes away mid-answer

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = scrape(ragcache_server)
        if metric_value(text, "ragcache_generations_in_progress") == 0:
            break
        time.sleep(0.2)
    assert metric_value(text, "ragcache_generations_in_progress") == 0, "the generation is still running"
    after = metric_value(text, "ragcache_generations_cancelled_total", reason="client_disconnect")
    assert after == before + 1
    # Nothing keeps computing in the background: the idle server burns (almost) no CPU.
    cpu_before = ragcache_server.cpu_seconds()
    time.sleep(2.0)
    assert ragcache_server.cpu_seconds() - cpu_before < 0.5
    assert_still_serving(client)
