"""Continuous batching for the local engine: concurrent requests share decode steps.

A request becomes a :class:`Sequence` and waits in the :class:`Batcher`. The
batcher's one thread loops over two moves (nano-vllm's scheduler, reduced):

1. **admit**: take the waiting sequences, as many as there are free places
   (``max_batch`` less those running), and prefill them together (each reusing
   the prefix KV store, into its own request cache; their own tokens in one
   forward pass, cut by :func:`plan_prefill`), then choose each one's first token,
   and only then run what the prefill deferred (the engine stores the prompt's new
   blocks there: off the first token's path, before the answer's usage is final);
2. **decode**: one forward pass over every running sequence (one new token
   each), then each sequence gets its next token; those that reached EOS or
   ``max_new``, or whose consumer went away (:meth:`Sequence.cancel`), leave.

So sequences join and leave between steps, and a request never waits for the
longest answer of a batch. Admitting everything that waits before the next
step keeps prefill batches large. The engine supplies the three model calls
(``prefill``, ``step``, ``choose``); this module only schedules and hands
tokens over, through each sequence's own queue, to the thread that streams it.

Other model work goes through the batcher too, so the batcher's thread is the
only one that runs the model. A warm-up's prefill is **background** work
(:meth:`Batcher.background`): a generator that yields after each forward pass
(one ``prefill_chunk``), advanced one step at a time only while no request waits
or runs, so a live request waits for at most the one step in progress, never for
a whole prefix or a queue of them (issue 27: a warm-up of ``corpora/sqlite`` held
the first chat request for over 300 s). :meth:`Batcher.call` runs short work at
once, between two steps. Both run on the batcher's thread: each thread that runs
torch ops keeps an OpenMP team of its own, and once the process holds more
OpenMP threads than cores, libgomp stops spinning between parallel regions —
a 16-row decode step then took 1.45x as long on two cores (``python -m
ragcache.bench.steps``, variant ``second-thread``; docs/reliability.md, Load).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ragcache.backends.base import CacheUsage, GenerationOptions
from ragcache.errors import BackendError

__all__ = ["Batcher", "Cancelled", "Sequence", "plan_prefill"]

log = logging.getLogger(__name__)

_TOKEN, _END, _ERROR = "token", "end", "error"
CANCEL_POLL_S = 0.1  # how often a consumer waiting for a token looks at its cancel event
T = TypeVar("T")


class Cancelled(BackendError):
    """The consumer went away (its cancel event was set) before the answer was complete."""


@dataclass(eq=False)
class Sequence:
    """One request in the engine: its prompt, decoding state and the queue its tokens go out by."""

    encoded: Any  # EncodedPrompt
    options: GenerationOptions
    max_new: int
    generator: Any = None  # torch.Generator when sampling
    cache: Any = None
    usage: CacheUsage | None = None
    generated: int = 0
    last_token: int = -1
    position: int = 0  # tokens in ``cache``: where the next fed token goes
    cancelled: bool = False
    done: bool = False
    submitted_at: float = 0.0  # perf_counter at submit, and when the prefill ended
    prefilled_at: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase, for usage.raw
    progress: Callable[[str, int, int], None] | None = None  # the caller's ragcache.progress hook
    settle: Callable[[], None] | None = None  # the prefill's deferred work, run once the first token is out
    outbox: queue.SimpleQueue[tuple[str, Any]] = field(default_factory=queue.SimpleQueue, repr=False)

    def cancel(self) -> None:
        """The consumer is gone: the batcher drops the sequence before its next step."""
        self.cancelled = True

    def tokens(self, cancelled: threading.Event | None = None) -> Iterator[int]:
        """Token ids as the batcher produces them (blocking); raises what the engine raised.

        The wait looks at ``cancelled`` every ``CANCEL_POLL_S`` and raises :class:`Cancelled` once it
        is set: a consumer whose client left must not wait for a token (a queued request's first
        comes only after its prefill) to learn that it can stop.
        """
        while True:
            try:
                kind, value = self.outbox.get(timeout=CANCEL_POLL_S if cancelled is not None else None)
            except queue.Empty:
                if cancelled is not None and cancelled.is_set():
                    raise Cancelled("the consumer went away before the answer was complete") from None
                continue
            if kind == _TOKEN:
                yield value
            elif kind == _END:
                return
            else:
                raise value

    def emit(self, token: int) -> None:
        self.generated += 1
        self.last_token = token
        self.outbox.put((_TOKEN, token))

    def finish(self, error: BaseException | None = None) -> None:
        if not self.done:
            self.done = True
            self.cache = None  # the KV copy goes as soon as the sequence leaves
            self.outbox.put((_ERROR, error) if error is not None else (_END, None))


Prefill = Callable[[list[Sequence]], Any]  # fills each seq's cache, usage, position; returns each one's last logits
Step = Callable[[list[Sequence]], Any]  # one token for each sequence: logits [rows, vocab]
Choose = Callable[[Any, Sequence], int]


class Batcher:
    """Waiting and running sequences, and the thread that steps them (see the module docstring)."""

    def __init__(self, prefill: Prefill, step: Step, choose: Choose, eos: frozenset[int], max_batch: int) -> None:
        self.prefill, self.step, self.choose, self.eos = prefill, step, choose, eos
        self.max_batch = max_batch
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.jobs: deque[_Job] = deque()
        self.background_jobs: deque[_Background] = deque()  # advanced a step at a time, when idle
        self.background_steps = 0  # steps run so far (what /readyz and tests read)
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, seq: Sequence) -> Sequence:
        """Queue ``seq``; its tokens arrive through :meth:`Sequence.tokens`."""
        with self._wake:
            self._ensure_running()
            seq.submitted_at = time.perf_counter()
            self.waiting.append(seq)
            self._wake.notify()
        return seq

    def call(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the batcher's thread between two steps and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:  # already there (called from a step): run it now
            return work()
        job = _Job(work)
        with self._wake:
            self._ensure_running()
            self.jobs.append(job)
            self._wake.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def background(self, steps: Generator[None, None, T]) -> T:
        """Run ``steps`` on the batcher's thread one step (one ``next``) at a time, each only while no
        request waits or runs; block until it returns, and return its return value (or raise its error)."""
        if threading.current_thread() is self._thread:  # already there: no traffic can run meanwhile anyway
            return _run_all(steps)
        job = _Background(steps)
        with self._wake:
            self._ensure_running()
            self.background_jobs.append(job)
            self._wake.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _ensure_running(self) -> None:
        """Start the thread on first use (``self._wake`` held); refuse work once closed."""
        if self._closed:
            raise BackendError("the local engine is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ragcache-batcher", daemon=True)
            self._thread.start()
            _LIVE.add(self)

    def cancel(self, seq: Sequence) -> None:
        """The consumer of ``seq`` is gone: a queued sequence leaves the queue now, never prefilled (its
        consumer's wait ends); a running one leaves before the next step."""
        seq.cancel()
        with self._wake:
            try:
                self.waiting.remove(seq)
            except ValueError:  # running, finished, or taken for a prefill: the loop drops it
                return
        seq.finish()

    def queue_depth(self) -> int:
        """Sequences waiting for a place in the batch (not yet prefilled)."""
        return len(self.waiting)

    def num_running(self) -> int:
        return len(self.running)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread; sequences still queued or running end with an error."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
        closed = BackendError("the local engine closed before the answer was complete")
        for seq in [*self.waiting, *self.running]:
            seq.finish(closed)
        self.waiting.clear()
        self.running.clear()
        while self.jobs:
            self.jobs.popleft().fail(BackendError("the local engine closed before the work ran"))
        while self.background_jobs:
            self.background_jobs.popleft().fail(BackendError("the local engine closed before the warm-up ended"))

    # --- the loop -----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._closed or self.waiting or self.running or self.jobs or self.background_jobs):
                    self._wake.wait()
                if self._closed:
                    return
                jobs, self.jobs = list(self.jobs), deque()
            for job in jobs:
                job.run()
            self._admit()
            self._decode()
            self._background_step()

    def _background_step(self) -> None:
        """One step of the oldest background job, only if no request waits or runs (live traffic first)."""
        with self._wake:
            if self.waiting or self.running or not self.background_jobs:
                return
            job = self.background_jobs[0]
        self.background_steps += 1
        if job.step():
            with self._wake:
                self.background_jobs.popleft()

    def _take_waiting(self) -> list[Sequence]:
        """The waiting sequences that fit in the batch (cancelled ones end here)."""
        taken: list[Sequence] = []
        with self._wake:
            while self.waiting and len(self.running) + len(taken) < self.max_batch:
                seq = self.waiting.popleft()
                if seq.cancelled:
                    seq.finish()
                else:
                    taken.append(seq)
        return taken

    def _admit(self) -> None:
        """Prefill the waiting sequences that fit, together, and choose their first tokens."""
        if batch := self._take_waiting():
            self._start(batch)

    def _start(self, batch: list[Sequence]) -> None:
        """Prefill ``batch`` in one go; if that fails, each sequence alone, so a failure is only its own."""
        try:
            logits = self.prefill(batch)
        except BaseException as exc:  # the request fails, the engine goes on
            if len(batch) == 1:
                batch[0].finish(exc)
                return
            log.warning("a prefill of %d sequences failed (%r); prefilling each alone", len(batch), exc)
            for seq in batch:
                self._start([seq])
            return
        for seq, row in zip(batch, logits, strict=True):
            try:
                if seq.max_new <= 0:
                    _settle(seq)
                    seq.finish()
                    continue
                self._advance(seq, row)
            except BaseException as exc:
                seq.finish(exc)
                continue
            if not seq.done:
                self.running.append(seq)

    def _decode(self) -> None:
        """One forward pass over the running sequences; each gets its next token or leaves."""
        for seq in self.running:
            if seq.cancelled:
                seq.finish()
        rows = [seq for seq in self.running if not seq.done]
        self.running = rows
        if not rows:
            return
        try:
            logits = self.step(rows)
            for seq, row in zip(rows, logits, strict=True):
                self._advance(seq, row)
        except BaseException as exc:
            log.exception("a decode step failed; its %d sequences end with the error", len(rows))
            for seq in rows:
                seq.finish(exc)
        self.running = [seq for seq in rows if not seq.done]

    def _advance(self, seq: Sequence, logits: Any) -> None:
        """Choose ``seq``'s next token from ``logits``; finish it on EOS or at ``max_new``."""
        token = self.choose(logits, seq)
        if token not in self.eos:
            seq.emit(token)
        _settle(seq)  # after the first token went out, before the answer (and its usage) ends
        if token in self.eos or seq.generated >= seq.max_new:
            seq.finish()


def _settle(seq: Sequence) -> None:
    """Run ``seq``'s deferred prefill work (the engine's store of its new blocks) once."""
    if seq.settle is not None:
        settle, seq.settle = seq.settle, None
        settle()


_LIVE: weakref.WeakSet[Batcher] = weakref.WeakSet()


@atexit.register
def _close_live_batchers() -> None:
    """Stop every batcher thread before the interpreter finalizes: a daemon thread still in a
    forward then would be killed inside torch's C++ code, and the process abort (exit status 134)."""
    for batcher in list(_LIVE):
        batcher.close(timeout_s=30.0)


class _Job:
    """A call run on the batcher's thread; the caller waits on ``done``."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.work, self.done = work, threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:  # handed to the caller
            self.error = exc
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class _Background(_Job):
    """Work in steps (a generator); the caller waits on ``done`` for its return value."""

    def __init__(self, steps: Generator[None, None, Any]) -> None:
        super().__init__(lambda: None)
        self.steps = steps

    def step(self) -> bool:
        """Advance one step; True once the work is over (returned or raised)."""
        try:
            next(self.steps)
        except StopIteration as stop:
            self.result = stop.value
        except BaseException as exc:  # handed to the caller
            self.error = exc
        else:
            return False
        self.done.set()
        return True

    def fail(self, error: BaseException) -> None:
        with contextlib.suppress(ValueError):  # still executing on a thread that did not stop in time
            self.steps.close()
        super().fail(error)


def _run_all(steps: Generator[None, None, T]) -> T:
    """Every step of ``steps`` now; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def plan_prefill(spans: list[tuple[int, int]], budget: int) -> list[list[tuple[int, int, int]]]:
    """Cut token spans ``[start, end)`` (one per sequence) into forwards of at most ``budget`` tokens.

    Each forward is a list of pieces ``(sequence, start, end)``: short sequences
    share a forward, a long one continues over the next (chunked prefill). A
    sequence's pieces come in order, so its last piece is in its last forward.
    """
    forwards: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    room = budget
    for index, (start, end) in enumerate(spans):
        while start < end:
            take = min(end - start, room)
            current.append((index, start, start + take))
            start, room = start + take, room - take
            if room == 0:
                forwards.append(current)
                current, room = [], budget
    if current:
        forwards.append(current)
    return forwards
