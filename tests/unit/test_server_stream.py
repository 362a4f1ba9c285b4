"""GenerationStream: items arrive in order, errors surface, cancel closes the engine's generator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from ragcache.server.stream import GenerationStream


def test_items_then_end() -> None:
    async def run() -> list[object]:
        return [item async for item in GenerationStream(lambda: iter(["a", "b", 3])).start()]

    assert asyncio.run(run()) == ["a", "b", 3]


def test_errors_raised_by_the_engine_reach_the_consumer() -> None:
    def failing() -> Iterator[str]:
        yield "a"
        raise RuntimeError("engine broke")

    async def run() -> None:
        async for _ in GenerationStream(failing).start():
            pass

    with pytest.raises(RuntimeError, match="engine broke"):
        asyncio.run(run())


def test_cancel_closes_the_generator_and_reports_an_early_stop() -> None:
    produced: list[int] = []
    closed = threading.Event()
    reported: list[bool] = []

    def endless() -> Iterator[str]:
        try:
            n = 0
            while True:
                produced.append(n)
                n += 1
                yield f"t{n}"
        finally:
            closed.set()

    async def run() -> GenerationStream:
        stream = GenerationStream(endless, on_finish=reported.append).start()
        assert await anext(stream) == "t1"
        stream.cancel()
        async for _ in stream:  # drains what was queued, then ends
            pass
        return stream

    stream = asyncio.run(run())
    assert closed.wait(5) and stream.finished
    assert reported == [True]
    count = len(produced)
    assert not closed.wait(0.2) or len(produced) == count  # nothing runs after the close


def test_a_natural_end_is_not_a_cancellation() -> None:
    reported: list[bool] = []

    async def run() -> None:
        stream = GenerationStream(lambda: iter(["x"]), on_finish=reported.append).start()
        async for _ in stream:
            pass
        stream.cancel()  # after the end: a no-op

    asyncio.run(run())
    assert reported == [False]
