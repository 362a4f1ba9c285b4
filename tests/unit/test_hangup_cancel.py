"""A consumer that goes away while its request is still queued (issue 27 item 7): the request leaves
the batcher's queue at once, never prefilled, and its waiting thread ends; through the server's
:class:`GenerationStream` the end counts as stopped early. Scripted engine (tests/unit/test_batcher.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from test_batcher import Script, batcher, submit

from ragcache import cancel
from ragcache.backends.base import GenerationOptions
from ragcache.backends.local.batcher import Batcher, Cancelled, Sequence


def engine_stream(b: Batcher, prompt: int, max_new: int) -> Iterator[int]:
    """What ``LocalBackend.stream`` does around the batcher: submit, wait with the caller's cancel event,
    and take the sequence out however the wait ends."""
    seq = b.submit(Sequence(prompt, GenerationOptions(max_tokens=max_new), max_new))
    try:
        yield from seq.tokens(cancel.current())
    finally:
        b.cancel(seq)


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_cancelled_queued_request_leaves_the_queue_unprefilled() -> None:
    script = Script()
    script.gate.clear()  # the running request's steps hold the batch full
    b = batcher(script, max_batch=1)
    try:
        running = submit(b, 1, 1000)
        assert wait_until(lambda: b.num_running() == 1)
        event, outcome = threading.Event(), []

        def consume() -> None:
            with cancel.scope(event):
                try:
                    outcome.append(list(engine_stream(b, 2, 5)))
                except Cancelled as exc:
                    outcome.append(exc)

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        assert wait_until(lambda: b.queue_depth() == 1)
        event.set()  # the client hung up while the request was queued
        consumer.join(2.0)
        assert not consumer.is_alive(), "the consumer still waits for a token of a cancelled request"
        assert isinstance(outcome[0], Cancelled)
        assert b.queue_depth() == 0
        script.gate.set()
        b.cancel(running)
        assert wait_until(lambda: b.num_running() == 0)
        assert all(2 not in batch for batch in script.prefills), script.prefills
    finally:
        script.gate.set()
        b.close()


def test_a_cancelled_running_request_stops_between_steps() -> None:
    script = Script()
    b = batcher(script, max_batch=2)
    try:
        event, got = threading.Event(), []

        def consume() -> None:
            with cancel.scope(event), pytest.raises(Cancelled):
                for token in engine_stream(b, 3, 10_000):
                    got.append(token)
                    if len(got) == 3:
                        script.gate.clear()  # the next step blocks: the consumer waits for a token
                        event.set()

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        consumer.join(3.0)
        assert not consumer.is_alive()
        script.gate.set()
        assert wait_until(lambda: b.num_running() == 0 and b.queue_depth() == 0)
    finally:
        script.gate.set()
        b.close()


def test_generation_stream_cancel_ends_a_queued_generation_as_stopped_early() -> None:
    from ragcache.server.stream import GenerationStream

    script = Script()
    script.gate.clear()
    b = batcher(script, max_batch=1)
    finished: list[bool] = []

    async def scenario() -> None:
        stream = GenerationStream(lambda: engine_stream(b, 2, 5), on_finish=finished.append).start()
        assert await asyncio.to_thread(wait_until, lambda: b.queue_depth() == 1)
        stream.cancel()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(stream), 2.0)

    try:
        submit(b, 1, 1000)  # holds the only place in the batch
        asyncio.run(scenario())
        assert finished == [True]  # counted as cancelled (client_disconnect), not as an error
        assert b.queue_depth() == 0
    finally:
        script.gate.set()
        b.close()
