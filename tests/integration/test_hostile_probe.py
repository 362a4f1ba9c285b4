"""Issue 27's hostile probe, against the real server (``ragcache serve``, local model, corpora/small):
text no backend can take is a 400 naming the field, and an oversized ``Content-Length`` is a 413
answered from the header at once, whatever the body (docs/reliability.md, "Hostile probe")."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from server_harness import ServerProcess

BAD_TEXT = [("why \ud800?", "lone surrogate"), ("a \udfff b", "lone surrogate"), ("nul \x00 here", "NUL")]


def post(server: ServerProcess, path: str, body: dict) -> httpx.Response:
    """``body`` as JSON with ASCII escapes (``"\\ud800"``), as a hostile client writes it."""
    headers = {"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"}
    return httpx.post(server.base_url + path, content=json.dumps(body), headers=headers, timeout=120)


@pytest.mark.parametrize(("content", "what"), BAD_TEXT)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_text_in_a_message_is_a_400_naming_it(
    ragcache_server: ServerProcess, content: str, what: str, stream: bool
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]
    reply = post(ragcache_server, "/v1/chat/completions",
                 {"model": "small", "messages": messages, "max_tokens": 2, "stream": stream})  # fmt: skip
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_text" and error["param"] == "messages.1.content", error
    assert what in error["message"] and "messages.1.content" in error["message"], error


def test_bad_text_in_every_field_is_a_400(ragcache_server: ServerProcess) -> None:
    parts = [{"type": "text", "text": "ok "}, {"type": "text", "text": "\ud800"}]
    cases = [
        ("/v1/chat/completions", {"model": "small", "messages": [{"role": "user", "content": parts}]},
         "messages.0.content"),
        ("/v1/chat/completions", {"model": "sm\ud800all", "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ("/v1/chat/completions", {"model": "small", "messages": [{"role": "user", "content": "hi"}],
                                  "stop": ["\x00"]}, "stop"),
        ("/v1/ask", {"question": "why \ud800"}, "question"),
        ("/v1/ask", {"question": "why", "context": "\x00"}, "context"),
    ]  # fmt: skip
    for path, body, param in cases:
        reply = post(ragcache_server, path, body)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["error"]["code"] == "invalid_text", reply.text
        assert reply.json()["error"]["param"] == param, reply.text


def test_control_characters_other_than_nul_are_answered(ragcache_server: ServerProcess) -> None:
    """The accepted side of the policy (ragcache/text.py): tabs, form feeds, escapes, astral characters."""
    content = "Is SQLite\t a server?\x0c \x1b[1m \U0001f600 \u00e9"
    reply = post(ragcache_server, "/v1/chat/completions",
                 {"model": "small", "messages": [{"role": "user", "content": content}], "max_tokens": 2})  # fmt: skip
    assert reply.status_code == 200, reply.text


def raw_exchange(server: ServerProcess, head: str, body: bytes, timeout_s: float = 10.0) -> tuple[bytes, float]:
    """Send ``head`` (the request line and headers) and ``body`` on a raw socket; what comes back before the
    server closes or ``timeout_s`` passes, and the seconds that took."""
    host, port = server.base_url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + body)
        received = b""
        try:
            while b"\r\n\r\n" not in received or b"request_too_large" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass
    return received, time.monotonic() - started


@pytest.mark.parametrize("length", ["5000000000", "99999999999999999999", "1000001"])
def test_oversized_content_length_is_a_413_at_once(ragcache_server: ServerProcess, length: str) -> None:
    """Issue 27 item 2: the server used to drain the declared body (5 GB: waits forever for 2 bytes;
    20 digits: the connection dropped with no answer). The limit is 1,000,000 bytes here."""
    head = (f"POST /v1/chat/completions HTTP/1.1\nHost: x\nAuthorization: Bearer {ragcache_server.api_key}\n"
            f"Content-Type: application/json\nContent-Length: {length}\n\n")  # fmt: skip
    received, took = raw_exchange(ragcache_server, head, b"{}")
    assert received.startswith(b"HTTP/1.1 413"), received[:300]
    assert b"request_too_large" in received and took < 5.0, (took, received[:300])
    assert httpx.get(ragcache_server.base_url + "/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize(("content", "what"), BAD_TEXT)
def test_the_library_raises_a_ragcache_error_naming_the_text(small_rag: object, content: str, what: str) -> None:
    """``RagCache.ask`` (local backend) used to raise the tokenizer's TypeError; the facade checks the
    caller's text before planning, for every backend, and names the argument."""
    from ragcache.errors import InvalidTextError
    from ragcache.prompt import Message

    with pytest.raises(InvalidTextError, match=what) as caught:
        small_rag.ask(content)  # type: ignore[attr-defined]
    assert caught.value.field == "question" and str(caught.value).startswith("question "), caught.value
    with pytest.raises(InvalidTextError, match=what) as caught:
        small_rag.ask("Is SQLite a server?", context=content)  # type: ignore[attr-defined]
    assert caught.value.field == "context"
    history = [Message("user", content), Message("assistant", "ok")]
    with pytest.raises(InvalidTextError, match=what) as caught:
        small_rag.ask("Is SQLite a server?", history=history)  # type: ignore[attr-defined]
    assert caught.value.field == "history[0].content"
