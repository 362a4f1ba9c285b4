"""Run a blocking generation in its own thread and consume it from asyncio.

The facade's ``RagCache.stream`` is a plain iterator (text deltas, then the
final Answer) that blocks on the engine. :class:`GenerationStream` pulls it in
a dedicated thread and hands each item to the event loop. ``cancel()`` (a
client went away) makes the thread stop pulling and ``close()`` the iterator,
which raises ``GeneratorExit`` inside the engine's generator: the generation
stops after the token it is computing, instead of running on unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

__all__ = ["GenerationStream"]

_ITEM, _ERROR, _DONE = "item", "error", "done"


class GenerationStream:
    """An async iterator over a blocking iterator, with cooperative cancel."""

    def __init__(self, make_iterator: Callable[[], Iterator[Any]], on_finish: Callable[[bool], None] | None = None):
        """``on_finish(stopped_early)`` runs in the worker thread once the engine's iterator is closed."""
        self._make_iterator = make_iterator
        self._on_finish = on_finish
        self._cancelled = threading.Event()
        self._finished = threading.Event()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._exhausted = False
        self._thread = threading.Thread(target=self._run, name="ragcache-generation", daemon=True)

    def start(self) -> GenerationStream:
        self._thread.start()
        return self

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def finished(self) -> bool:
        """True once the engine's iterator has been closed (the generation is over)."""
        return self._finished.is_set()

    def cancel(self) -> None:
        """Ask the worker thread to stop after the item it is computing."""
        if not self._finished.is_set():
            self._cancelled.set()

    def _put(self, kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    def _run(self) -> None:
        iterator: Iterator[Any] | None = None
        stopped_early = False
        try:
            iterator = self._make_iterator()
            for item in iterator:
                if self._cancelled.is_set():
                    stopped_early = True
                    break
                self._put(_ITEM, item)
        except BaseException as exc:
            self._put(_ERROR, exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            self._finished.set()
            if self._on_finish is not None:
                self._on_finish(stopped_early)
            self._put(_DONE, None)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self._exhausted:
            raise StopAsyncIteration
        kind, value = await self._queue.get()
        if kind == _ITEM:
            return value
        self._exhausted = True
        if kind == _ERROR:
            raise value
        raise StopAsyncIteration
