"""Streaming, all of it: a blocking generation bridged to asyncio, cancelled on disconnect, sent as SSE.

The facade's ``RagCache.stream`` is a plain iterator (text deltas, then the
final Answer) that blocks on the engine. :class:`GenerationStream` pulls it in
a dedicated thread and hands each item to the event loop. ``cancel()`` (a
client went away) makes the thread stop pulling and ``close()`` the iterator,
which raises ``GeneratorExit`` inside the engine's generator: the generation
stops after the token it is computing, instead of running on unseen.

:func:`first_item` and :func:`collect` watch the client while a route waits;
:func:`chat_events` turns a stream into OpenAI ``chat.completion.chunk`` SSE
events, ending with the error (in the API's error shape) if the engine fails
after the headers were sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ragcache import cancel
from ragcache.app import Answer, RagCache
from ragcache.backends.base import GenerationOptions
from ragcache.errors import BackendError
from ragcache.server.errors import ClientDisconnected, ErrorReply, describe
from ragcache.server.metrics import ServerMetrics
from ragcache.server.openai_compat import ChatInputs, CompletionIds, completion_chunk, completion_usage, finish_reason
from ragcache.server.schemas import RagcacheInfo

__all__ = ["GenerationStream", "chat_events", "collect", "first_item", "sse_response", "start_generation"]

_ITEM, _ERROR, _DONE = "item", "error", "done"
_DISCONNECT_POLL_S = 0.2


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
        """Pull the iterator here, with the cancel event as its :func:`ragcache.cancel.current`: a backend
        waiting for its engine stops waiting on cancel (issue 27 item 7: a request still queued when its
        client left stayed queued until its first token), and that end counts as stopped early."""
        iterator: Iterator[Any] | None = None
        stopped_early = False
        try:
            with cancel.scope(self._cancelled):
                iterator = self._make_iterator()
                for item in iterator:
                    if self._cancelled.is_set():
                        stopped_early = True
                        break
                    self._put(_ITEM, item)
        except BaseException as exc:
            if self._cancelled.is_set():  # the backend stopped because of the cancel: not an error
                stopped_early = True
            else:
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


def start_generation(
    rag: RagCache, inputs: ChatInputs, options: GenerationOptions, metrics: ServerMetrics
) -> GenerationStream:
    """Start ``rag.stream`` in its own thread; the in-progress gauge falls when the engine stops."""

    def finished(stopped_early: bool) -> None:
        metrics.in_progress.dec()
        if stopped_early:
            metrics.cancelled.labels("client_disconnect").inc()

    def make() -> Iterator[str | Answer]:
        return rag.stream(
            inputs.question,
            context=inputs.context,
            history=inputs.history,
            options=options,
            conversation=inputs.conversation,
        )

    metrics.in_progress.inc()
    return GenerationStream(make, on_finish=finished).start()


@contextlib.asynccontextmanager
async def _cancel_on_disconnect(request: Request, stream: GenerationStream) -> AsyncIterator[None]:
    async def watch() -> None:
        while not stream.finished:
            if await request.is_disconnected():
                stream.cancel()
                return
            await asyncio.sleep(_DISCONNECT_POLL_S)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()


def _no_answer(stream: GenerationStream) -> Exception:
    if stream.cancelled:
        return ClientDisconnected()
    return BackendError("the generation ended without an answer")


async def first_item(request: Request, stream: GenerationStream) -> str | Answer:
    """The first delta, so errors raised before any output become HTTP errors, not SSE events."""
    async with _cancel_on_disconnect(request, stream):
        try:
            return await anext(stream)
        except StopAsyncIteration:
            raise _no_answer(stream) from None
        except BaseException:
            stream.cancel()
            raise


async def collect(request: Request, stream: GenerationStream) -> Answer:
    """Run a generation to its Answer, stopping it if the client goes away."""
    first = await first_item(request, stream)
    answer = first if isinstance(first, Answer) else None
    async with _cancel_on_disconnect(request, stream):
        try:
            async for item in stream:
                if isinstance(item, Answer):
                    answer = item
        finally:
            stream.cancel()
    if answer is None:
        raise _no_answer(stream)
    return answer


def sse(data: str | BaseModel) -> str:
    """One server-sent event (a model as its JSON, unset fields left out)."""
    if isinstance(data, BaseModel):
        data = data.model_dump_json(exclude_none=True)
    return f"data: {data}\n\n"


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def chat_events(
    stream: GenerationStream,
    first: str | Answer,
    ids: CompletionIds,
    *,
    finish: Callable[[Answer], RagcacheInfo],
    include_usage: bool,
    on_error: Callable[[ErrorReply], None],
) -> AsyncIterator[str]:
    """SSE events of a streamed chat completion; the generation is cancelled with the request.

    ``finish(answer)`` records the answer and gives the ``ragcache`` object of
    the last chunk; ``on_error`` counts an error that became the last event.
    """
    answer = None
    try:
        yield sse(completion_chunk(ids, role=True, content=""))
        item: str | Answer = first
        while True:
            if isinstance(item, Answer):
                answer = item
            elif item:
                yield sse(completion_chunk(ids, content=item))
            try:
                item = await anext(stream)
            except StopAsyncIteration:
                break
    except Exception as exc:  # headers are sent: the error becomes the last event
        reply = describe(exc)
        on_error(reply)
        yield sse(json.dumps(reply.body(), separators=(",", ":")))
        return
    finally:
        stream.cancel()
    if answer is None:
        return
    yield sse(completion_chunk(ids, content="", finish=finish_reason(answer), info=finish(answer)))
    if include_usage:
        yield sse(completion_chunk(ids, usage=completion_usage(answer.usage), empty=True))
    yield sse("[DONE]")
