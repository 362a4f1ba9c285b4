"""Fuzzing the REST API with schemathesis against its own OpenAPI schema.

It drives the real server: ``ragcache serve`` under uvicorn in its own process
(tests/server_harness.py: the local model over compiled corpora/small, API keys
on), over real HTTP, so uvicorn's parsing and every middleware are in the path.
Every operation gets schema-valid and schema-violating requests from a fixed
seed (``derandomize``) and a bounded number of examples. It asserts: no 5xx;
every error body in OpenAI's shape; every 2xx JSON body valid against the
schema; no request takes longer than ``TIMEOUT_S`` or makes the process exit.

To keep the run short on a small CPU, a generated ``max_tokens`` (or
``max_completion_tokens``) is capped at ``MAX_TOKENS`` and set when absent or
null: the fuzz is about inputs, not about long answers (a huge ``max_tokens``
is honoured up to the context window, which takes minutes on a CPU). Valid
chat requests name the served corpus as ``model`` (random names are all 404s;
the invalid-input run and tests/integration/test_server_security.py cover
model names).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from server_harness import ServerProcess

MAX_EXAMPLES = 25  # per operation and mode
TIMEOUT_S = 60.0
MAX_TOKENS = 2
ERROR_KEYS = {"message", "type", "param", "code"}
SERVED = "small"


def adjust(body: Any, mode: GenerationMode) -> None:
    """Cap the answer length; valid chat requests name the served corpus (else nearly all are 404s)."""
    if not isinstance(body, dict):
        return
    if mode == GenerationMode.POSITIVE and "messages" in body:
        body["model"] = SERVED
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if (name in body and value is None) or (numeric and value > MAX_TOKENS):  # 61.0 is a JSON integer
            body[name] = MAX_TOKENS
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = MAX_TOKENS


def assert_openai_error(payload: Any, where: str) -> None:
    assert isinstance(payload, dict) and set(payload) == {"error"}, f"{where}: not an OpenAI error: {payload!r}"
    error = payload["error"]
    assert set(error) == ERROR_KEYS, f"{where}: error keys {sorted(error)}"
    assert isinstance(error["message"], str) and error["message"], where
    assert isinstance(error["type"], str) and isinstance(error["code"], str), where


def sse_errors(text: str) -> list[Any]:
    """The error events of a streamed answer (its ``data:`` lines holding an ``error``)."""
    events = []
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            event = json.loads(line[len("data: ") :])
            if "error" in event:
                events.append(event)
    return events


def check_response(case: Any, response: Any, server: ServerProcess) -> None:
    where = f"{case.method} {case.formatted_path} body={case.body!r}"[:400]
    assert server.process.poll() is None, f"the server exited after {where}:\n{server.log_tail()}"
    assert response.status_code < 500, f"{where} → {response.status_code}: {response.text[:400]}"
    content_type = response.headers.get("content-type", [""])[0]  # schemathesis: lowercase keys, list values
    if response.status_code >= 400:
        assert content_type.startswith("application/json"), f"{where}: error as {content_type}"
        assert_openai_error(response.json(), where)
    elif content_type.startswith("text/event-stream"):
        for event in sse_errors(response.text):
            assert_openai_error(event, where)
    elif content_type.startswith("application/json"):
        case.operation.validate_response(response)


@pytest.fixture(scope="module")
def api_schema(ragcache_server: ServerProcess) -> Any:
    return schemathesis.openapi.from_url(ragcache_server.base_url + "/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_fuzzed_requests_get_no_5xx_and_openai_errors(
    api_schema: Any, ragcache_server: ServerProcess, mode: GenerationMode
) -> None:
    headers = {"Authorization": f"Bearer {ragcache_server.api_key}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/ask", "/v1/corpora/{name}"}
    calls: Counter[str] = Counter()

    for operation in operations:

        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            adjust(case.body, mode)
            started = time.monotonic()
            response = case.call(base_url=ragcache_server.base_url, headers=headers, timeout=TIMEOUT_S)
            if os.environ.get("FUZZ_VERBOSE"):
                print(
                    f"{time.monotonic() - started:6.2f}s {response.status_code} {case.method} {case.path} "
                    f"{case.body!r:.200}"
                )
            calls[case.path] += 1
            check_response(case, response, ragcache_server)

        try:
            fuzz()
        except Unsatisfiable:
            # Nothing to break: the operation takes no input beyond the header the test sets.
            assert mode == GenerationMode.NEGATIVE, operation.path

    required = ["/v1/chat/completions", "/v1/ask"]
    if mode == GenerationMode.POSITIVE:
        required.append("/v1/corpora/{name}")  # any string is a valid name: there is no invalid one
    for path in required:
        assert calls[path] >= MAX_EXAMPLES // 2, f"{path} was fuzzed only {calls[path]} times"
    assert httpx.get(ragcache_server.base_url + "/healthz", timeout=10).status_code == 200
    assert ragcache_server.process.poll() is None
