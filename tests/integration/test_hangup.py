"""Clients that hang up on streamed requests, in every order a client can, many times (issue 27 item 7:
20 streamed requests whose clients left after the first chunk once left 11 queued with nothing running
for over 120 s). Real server (``ragcache serve``, local model, corpora/small), raw loopback sockets.

Each round sends a few concurrent streamed requests, each client leaving at its own point (mid-request,
right after sending it, with a reset, after the headers, after the first chunk, mid-stream, after a
half-close, or reading to the end), then requires ``ragcache_generations_in_progress`` and
``ragcache_queue_depth`` back at 0 within a bound; a fresh request must then be answered promptly.
Every loop is bounded in count and time. docs/reliability.md, "Hostile probe (issue 27)".
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time

import httpx
from server_harness import ServerProcess, metric_value

MODES = (
    "mid_request",  # headers and half the body, then gone: no generation starts
    "after_request",  # the whole request, then gone before the first byte (the request is queued)
    "reset_after_request",  # the same with a TCP reset
    "after_headers",
    "after_first_chunk",  # the role chunk: the generation's first token is out
    "reset_after_first_chunk",
    "mid_stream",  # a content chunk read, more coming
    "half_close",  # shuts its sending side, reads nothing, then closes
    "complete",  # reads to [DONE]: the control
)
ROUNDS = 50
PER_ROUND = 3  # concurrent clients a round, in modes drawn at random (seeded): each mode ~17 times
QUESTIONS = ("What is SQLite?", "Is SQLite a server?")
SOCKET_TIMEOUT_S = 30.0
DRAIN_S = 30.0  # a round's generations must all have ended within this (a stall fails here)
BUDGET_S = 300.0  # the 50 rounds, a bound for a slow shared machine (see docs/reliability.md for timings)


def request_bytes(api_key: str, question: str, max_tokens: int = 2) -> bytes:
    body = json.dumps({"model": "small", "stream": True, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": question}]}).encode()  # fmt: skip
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    return head + body


def hang_up(
    port: int,
    api_key: str,
    mode: str,
    question: str,
    delay_s: float,
    errors: list[str],
    max_tokens: int = 2,
    streaming: threading.Semaphore | None = None,
) -> None:
    """One client, leaving at ``mode``'s point after ``delay_s`` more seconds (``streaming`` is released
    once its first chunk came)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    received = b""

    def read_until(done: bytes, count: int = 1) -> bool:
        nonlocal received
        while received.count(done) < count:
            data = sock.recv(65536)
            if not data:
                return False
            received += data
        return True

    try:
        data = request_bytes(api_key, question, max_tokens)
        if mode == "mid_request":
            sock.sendall(data[: len(data) - 10])
            time.sleep(delay_s)
            return
        sock.sendall(data)
        if mode == "half_close":
            sock.shutdown(socket.SHUT_WR)
        time.sleep(delay_s)
        if mode in ("after_request", "reset_after_request", "half_close"):
            return
        if not read_until(b"\r\n\r\n"):
            errors.append(f"{mode}: the connection closed before the headers")
            return
        if mode == "after_headers":
            return
        if not read_until(b"data: "):
            errors.append(f"{mode}: no first chunk: {received[-300:]!r}")
            return
        if streaming is not None:
            streaming.release()
        if mode in ("after_first_chunk", "reset_after_first_chunk"):
            return
        if mode == "mid_stream":
            read_until(b"data: ", 2)
            return
        if not read_until(b"data: [DONE]") or b"\r\n\r\n" not in received or b" 200 " not in received[:20]:
            errors.append(f"{mode}: incomplete answer: {received[-300:]!r}")
    except OSError as exc:  # a timeout is a stall from the client's side
        errors.append(f"{mode}: {exc!r}")
    finally:
        if mode.startswith("reset"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def gauges(server: ServerProcess) -> tuple[float, float]:
    """(generations in progress, requests queued) from /metrics."""
    text = httpx.get(server.base_url + "/metrics", timeout=10).text
    return metric_value(text, "ragcache_generations_in_progress"), metric_value(text, "ragcache_queue_depth")


def drained(server: ServerProcess, timeout_s: float) -> tuple[bool, tuple[float, float]]:
    deadline = time.monotonic() + timeout_s
    while True:
        now = gauges(server)
        if now == (0.0, 0.0) or time.monotonic() > deadline:
            return now == (0.0, 0.0), now
        time.sleep(0.1)  # each scrape costs the server CPU


def test_hang_ups_in_every_order_never_leave_a_generation_behind(ragcache_server: ServerProcess) -> None:
    server, port = ragcache_server, int(ragcache_server.base_url.rsplit(":", 1)[1])
    rng = random.Random(27)
    started = time.monotonic()
    assert drained(server, DRAIN_S)[0], "the server was busy before the test"
    cancelled_before = metric_value(httpx.get(server.base_url + "/metrics", timeout=10).text,
                                    "ragcache_generations_cancelled_total")  # fmt: skip
    for round_ in range(ROUNDS):
        assert time.monotonic() - started < BUDGET_S, f"over the time budget at round {round_}"
        errors: list[str] = []
        clients = [
            threading.Thread(
                target=hang_up,
                args=(port, server.api_key, mode, rng.choice(QUESTIONS), rng.choice((0.0, 0.0, 0.02, 0.1)), errors),
                daemon=True,
            )
            for mode in rng.sample(MODES, PER_ROUND)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(SOCKET_TIMEOUT_S + 5)
        ok, now = drained(server, DRAIN_S)
        assert ok, (f"stall in round {round_}: (in progress, queued) = {now} {DRAIN_S:.0f} s after its clients "
                    f"left\n{server.log_tail()}")  # fmt: skip
        assert not errors, f"round {round_}: {errors}"
    cancelled = metric_value(httpx.get(server.base_url + "/metrics", timeout=10).text,
                             "ragcache_generations_cancelled_total") - cancelled_before  # fmt: skip
    assert cancelled > 0, "no hang-up was counted as a cancelled generation"
    asked = time.monotonic()
    reply = httpx.post(server.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {server.api_key}"},
                       json={"model": "small", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi?"}]},
                       timeout=60)  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert time.monotonic() - asked < 30, "a fresh request after the hang-ups was not answered promptly"
    print(f"\n{ROUNDS} rounds x {PER_ROUND} clients in {asked - started:.1f} s; {cancelled:.0f} cancelled")


def test_a_request_whose_client_left_while_queued_leaves_the_queue_at_once(ragcache_server: ServerProcess) -> None:
    """The batch full of long answers, more requests queued behind it whose clients hang up: they leave
    the queue within a second, never prefilled, counted as cancelled, while the batch still runs (before
    the fix they stayed queued, and were prefilled, until a place in the batch freed)."""
    server, port = ragcache_server, int(ragcache_server.base_url.rsplit(":", 1)[1])
    assert drained(server, DRAIN_S)[0], "the server was busy before the test"
    metrics = httpx.get(server.base_url + "/metrics", timeout=10).text
    cancelled_before = metric_value(metrics, "ragcache_generations_cancelled_total")
    batch, queued, errors = 8, 4, []  # backend.options.max_batch is 8 by default
    streaming = threading.Semaphore(0)
    readers = [threading.Thread(target=hang_up, args=(port, server.api_key, "complete", QUESTIONS[i % 2], 0.0,
                                                     errors, 16, streaming), daemon=True)
               for i in range(batch)]  # fmt: skip
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 3 * DRAIN_S  # eight first tokens on a slow shared machine
    for _ in range(batch):  # every reader has its first chunk: the batch is full, 15 steps to go
        assert streaming.acquire(timeout=max(deadline - time.monotonic(), 0.1)), errors
    leavers = [socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) for _ in range(queued)]
    for leaver in leavers:
        leaver.sendall(request_bytes(server.api_key, QUESTIONS[0]))
    while gauges(server)[1] < queued and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gauges(server)[1] == queued, "the requests did not queue behind the full batch"
    for leaver in leavers:  # their clients hang up while they wait for a place in the batch
        leaver.close()
    in_progress, depth = gauges(server)
    left_at = time.monotonic()
    while depth > 0 and time.monotonic() - left_at < 5.0:
        time.sleep(0.05)
        in_progress, depth = gauges(server)
    waited = time.monotonic() - left_at
    assert depth == 0, f"{depth:.0f} requests whose clients left are still queued {waited:.1f} s later"
    assert waited < 1.5 and in_progress > 0, (waited, in_progress)  # they left while the batch still ran
    for reader in readers:
        reader.join(SOCKET_TIMEOUT_S + 5)
    assert drained(server, DRAIN_S)[0]
    assert not errors, errors
    metrics = httpx.get(server.base_url + "/metrics", timeout=10).text
    assert metric_value(metrics, "ragcache_generations_cancelled_total") - cancelled_before >= queued
