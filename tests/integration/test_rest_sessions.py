"""Sessions over REST keep one route and reuse their history's KV (issue 11).

A real ``ragcache serve`` (uvicorn, the local model, corpora/small routed by
category so every turn carries its own snippets) driven by the official
``openai`` SDK for stateless chat completions and by plain HTTP for ``/v1/ask``
sessions. The three questions would route to different categories on their
own; in one session they must stay on the first one's blocks, and turns 2 and
3 must read the earlier turns from the cache (history sent byte for byte as
before, snippets included): turn N reads from the cache everything turn N-1
sent but the assistant header that closes a prompt (``SLACK`` tokens), which
is more than the stable prefix by the whole earlier user turn (its snippets).
Warm-up is off (it is not under test here, and it is slow on a loaded CPU).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from server_harness import ServerProcess, start_server

QUESTIONS = [
    "Which storage classes does SQLite use?",
    "How do I create an AUTOINCREMENT field?",
    "Can several processes open the same database at once?",
]
SLACK = 16  # the chat template's assistant header after the last user turn, not part of the history


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp: Path = tmp_path_factory.mktemp("sessions")
    router = {"mode": "blocks", "window_tokens": 3400, "snippet_tokens": 256}  # one-block runs, so turns have tails
    process = start_server(tmp, extra={"router": router, "cache": {"warm_on_start": False}}, index=True)
    try:
        yield process
    finally:
        process.stop()


def test_chat_completions_session_keeps_its_route_and_reads_history_from_the_cache(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0, timeout=600)
    messages: list[dict[str, str]] = []
    routes, cached, prompt = [], [], []
    for question in QUESTIONS:
        messages.append({"role": "user", "content": question})
        response = client.chat.completions.create(model="small", messages=messages, max_tokens=4, temperature=0)
        info = response.model_extra["ragcache"]
        routes.append(info["route"]["blocks"])
        cached.append(response.usage.prompt_tokens_details.cached_tokens)
        prompt.append(response.usage.prompt_tokens)
        messages.append({"role": "assistant", "content": response.choices[0].message.content})
    assert routes[0] and routes[1] == routes[0] and routes[2] == routes[0], routes
    # Turns 2 and 3 read all of the previous turn's prompt (stable prefix and history) from the cache.
    assert cached[1] >= prompt[0] - SLACK and cached[2] >= prompt[1] - SLACK, (cached, prompt)


def test_ask_session_keeps_its_route_and_stores_the_text_actually_sent(server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    routes, cached, prompt = [], [], []
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=600) as http:
        for turn, question in enumerate(QUESTIONS):
            body = {"question": question, "session_id": "rest-1", "max_tokens": 4, "temperature": 0}
            body["new_session"] = turn == 0  # the first turn opens the session in this worker
            reply = http.post("/v1/ask", json=body)
            assert reply.status_code == 200, reply.text
            routes.append(reply.json()["route"]["blocks"])
            cached.append(reply.json()["usage"]["cached_tokens"])
            prompt.append(reply.json()["usage"]["input_tokens"])
    assert routes[0] and routes.count(routes[0]) == 3, routes
    assert cached[1] >= prompt[0] - SLACK and cached[2] >= prompt[1] - SLACK, (cached, prompt)
