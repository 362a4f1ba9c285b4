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


def test_cancel_closes_the_generator_after_the_token_in_progress() -> None:
    """After ``cancel()`` the engine computes the token it is on, nothing more: that token is
    dropped, the generator is closed (GeneratorExit inside it) before the early stop is reported."""
    produced: list[int] = []
    resume = threading.Event()
    exits: list[str] = []
    finished: list[tuple[bool, list[str]]] = []

    def engine() -> Iterator[str]:
        try:
            for n in range(1, 50):  # bounded, so a cancel that does nothing fails instead of hanging
                produced.append(n)
                yield f"t{n}"
                resume.wait(5)  # token n+1 is "being computed" until the test lets it finish
        except GeneratorExit:
            exits.append("GeneratorExit")
            raise

    async def run() -> tuple[GenerationStream, list[str]]:
        stream = GenerationStream(engine, on_finish=lambda early: finished.append((early, list(exits)))).start()
        assert await anext(stream) == "t1"
        stream.cancel()
        resume.set()
        rest = [item async for item in stream]
        return stream, rest

    stream, rest = asyncio.run(run())
    assert rest == []  # t2, computed after the cancel, never reaches the client
    assert produced == [1, 2]  # and t3 was never started
    assert finished == [(True, ["GeneratorExit"])]  # closed by the stream, then reported as an early stop
    assert stream.cancelled and stream.finished


def test_a_natural_end_is_not_a_cancellation() -> None:
    reported: list[bool] = []

    async def run() -> None:
        stream = GenerationStream(lambda: iter(["x"]), on_finish=reported.append).start()
        async for _ in stream:
            pass
        stream.cancel()  # after the end: a no-op

    asyncio.run(run())
    assert reported == [False]
