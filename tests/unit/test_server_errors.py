"""The one error mapping of the server: each ragcache error → its status and the OpenAI error shape,
through the real exception handlers of a FastAPI app and as the last event of a failed stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import ragcache.errors as errors
from ragcache.server.errors import HTTP_STATUS, APIError, ClientDisconnected, describe, install_error_handlers
from ragcache.server.metrics import ServerMetrics
from ragcache.server.openai_compat import CompletionIds, InvalidChatRequest
from ragcache.server.stream import GenerationStream, chat_events

# (error, status, OpenAI error.type, code) — README "REST endpoint" and "Configuration" sections.
EXPECTED = [
    (errors.RagCacheError("x"), 500, "server_error", "ragcache_error"),
    (errors.ConfigError("x"), 400, "invalid_request_error", "config_error"),
    (errors.CorpusError("x"), 400, "invalid_request_error", "corpus_error"),
    (errors.EmptyCorpusError("x"), 400, "invalid_request_error", "empty_corpus"),
    (errors.CorpusNotFoundError("x"), 404, "not_found_error", "model_not_found"),
    (errors.ModelError("x"), 503, "server_error", "model_error"),
    (errors.RoutingError("x"), 400, "invalid_request_error", "routing_error"),
    (errors.BackendError("x"), 502, "server_error", "backend_error"),
    (errors.AuthenticationError("x"), 401, "authentication_error", "authentication_error"),
    (errors.RateLimitError("x"), 429, "rate_limit_error", "rate_limit_exceeded"),
    (errors.ContextLengthError("x"), 400, "invalid_request_error", "context_length_exceeded"),
    (errors.BackendUnavailableError("x"), 503, "server_error", "backend_unavailable"),
    (errors.UnsupportedError("x"), 501, "server_error", "unsupported"),
    (errors.InvalidTextError("x"), 400, "invalid_request_error", "invalid_text"),
    (errors.PortInUseError("x"), 500, "server_error", "port_in_use"),  # raised before serving; a 500 if ever
]


def test_every_public_ragcache_error_has_its_own_status() -> None:
    classes = {getattr(errors, name) for name in errors.__all__}
    assert classes - {type(e) for e, *_ in EXPECTED} == set()  # a new error needs a row here
    assert set(HTTP_STATUS) <= classes


def _app() -> tuple[FastAPI, ServerMetrics]:
    app, metrics = FastAPI(), ServerMetrics()
    install_error_handlers(app, metrics)
    by_index = {i: e for i, (e, *_) in enumerate(EXPECTED)}

    @app.get("/raise/{index}")
    async def fail(index: int) -> None:
        raise by_index[index]

    @app.get("/api-error")
    async def api_error() -> None:
        raise InvalidChatRequest("the question is empty", "messages", "invalid_request")

    @app.get("/bug")
    async def bug() -> None:
        raise KeyError("oops")

    @app.get("/typed")
    async def typed(n: int) -> int:
        return n

    return app, metrics


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app, _ = _app()
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("index", "status", "kind", "code"),
    [(i, s, t, c) for i, (_, s, t, c) in enumerate(EXPECTED)],
    ids=[type(e).__name__ for e, *_ in EXPECTED],
)
def test_each_ragcache_error_maps_to_its_status_and_the_openai_shape(
    client: TestClient, index: int, status: int, kind: str, code: str
) -> None:
    response = client.get(f"/raise/{index}")
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["message"], body["error"]["type"], body["error"]["code"]) == ("x", kind, code)
    assert body["error"]["param"] == ("model" if code == "model_not_found" else None)


def test_http_layer_errors_validation_and_bugs_share_the_shape(client: TestClient) -> None:
    invalid = client.get("/api-error")
    assert invalid.status_code == 400
    assert invalid.json()["error"] == {
        "message": "the question is empty",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "invalid_request",
    }
    bad_param = client.get("/typed", params={"n": "seven"})
    assert bad_param.status_code == 400 and bad_param.json()["error"]["param"] == "query.n"
    assert bad_param.json()["error"]["code"] == "invalid_parameter"
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    bug = client.get("/bug")
    assert bug.status_code == 500 and bug.json()["error"]["code"] == "internal_error"
    assert "KeyError" in bug.json()["error"]["message"] and "oops" not in bug.json()["error"]["message"]


def test_errors_are_counted_by_route_and_code() -> None:
    app, metrics = _app()
    with TestClient(app, raise_server_exceptions=False) as test_client:
        test_client.get("/raise/10")
    text = metrics.exposition()[0].decode()
    assert 'ragcache_errors_total{code="context_length_exceeded",path="/raise/{index}"} 1.0' in text


def test_describe_covers_what_the_routes_raise_themselves() -> None:
    assert describe(APIError(401, "no key", code="missing_api_key")).status == 401
    disconnected = describe(ClientDisconnected())
    assert (disconnected.status, disconnected.code) == (499, "client_closed")


def test_a_failure_after_the_headers_becomes_the_last_sse_event() -> None:
    def engine() -> Iterator[str]:
        yield "partial"
        raise errors.BackendUnavailableError("engine at http://x is down")

    seen: list[str] = []

    async def run() -> list[str]:
        stream = GenerationStream(engine).start()
        first = await anext(stream)
        ids = CompletionIds.new("small", "f" * 64)
        events = chat_events(
            stream,
            first,
            ids,
            finish=lambda a: None,
            include_usage=False,  # type: ignore[arg-type,return-value]
            on_error=lambda reply: seen.append(reply.code),
        )
        return [event async for event in events]

    events = asyncio.run(run())
    assert all(e.startswith("data: ") and e.endswith("\n\n") for e in events)
    chunks = [json.loads(e[len("data: ") :]) for e in events]
    assert chunks[1]["choices"][0]["delta"]["content"] == "partial"
    assert chunks[-1] == {
        "error": {
            "message": "engine at http://x is down",
            "type": "server_error",
            "param": None,
            "code": "backend_unavailable",
        }
    }
    assert seen == ["backend_unavailable"]
