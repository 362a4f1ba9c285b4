"""What the CLI prints besides results: errors, quiet library logging, progress.

The library reports progress through a plain callback ``(stage, done, total)``;
:class:`ProgressReporter` renders it as a rich bar on a terminal and as a
one-line status at most every few seconds otherwise (logs of CI runs, pipes).
A generation's prefill and decoding (:mod:`ragcache.progress`, heard from the
local engine) are :class:`TokenProgress`: one live line with the rate and ETA on
a terminal, the same words as status lines on stderr otherwise; a backend that
reports nothing (a vendor API) shows "waiting for first token…".
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ragcache import progress as hooks
from ragcache.errors import RagCacheError

__all__ = [
    "ProgressReporter",
    "StageTiming",
    "TokenProgress",
    "begin_answer",
    "console",
    "end_answer",
    "err_console",
    "generation_progress",
    "handle_errors",
    "progress",
    "quiet_libraries",
    "rate_and_eta",
    "token_status",
    "write_answer",
]

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

# Environment read by transformers, huggingface_hub and tqdm when they are imported.
_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
STATUS_INTERVAL_S = 5.0


def handle_errors(func: F) -> F:
    """Turn ragcache errors into a clear message and the error's exit code (here, and only here)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagCacheError as exc:
            message = f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}"
            err_console.print(message)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class _NoteFormatter(logging.Formatter):
    """ragcache's own warnings as ``note: …`` lines; everything else as ``name: level: …``."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith("ragcache"):
            return f"note: {record.getMessage()}"
        return f"{record.name}: {record.levelname.lower()}: {record.getMessage()}"


class _NoteHandler(logging.StreamHandler):
    """stderr, after ending an answer line left open on stdout (a note never glues onto the answer)."""

    def emit(self, record: logging.LogRecord) -> None:
        end_answer()
        super().emit(record)


class _QuietFilter(logging.Filter):
    """Pass ragcache's warnings and every library's errors, whatever level a library set on its own logger."""

    def __init__(self, level: int | None) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if self.level is not None:
            return record.levelno >= self.level
        own = record.name == "ragcache" or record.name.startswith("ragcache.")
        return record.levelno >= (logging.WARNING if own else logging.ERROR)


def quiet_libraries() -> None:
    """Keep library chatter (loader INFO lines, tqdm bars, advisories) out of the CLI's output.

    One root handler is installed before any library is imported, so a library's own
    ``logging.basicConfig`` (llama_index's slides reader sets INFO) is a no-op, and it
    filters by level itself, since some libraries (bm25s) set DEBUG on their loggers.
    ``RAGCACHE_LOG_LEVEL`` (e.g. ``INFO``) shows everything from that level again.
    """
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    name = os.environ.get("RAGCACHE_LOG_LEVEL", "").upper()
    level = logging.getLevelName(name) if name else None
    if not isinstance(level, int):
        level = None
    handler = _NoteHandler()
    handler.setFormatter(_NoteFormatter())
    handler.addFilter(_QuietFilter(level))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level is not None else logging.WARNING)


@dataclass
class StageTiming:
    """When a stage was first and last reported, and how far it got."""

    started: float
    last: float
    done: int = 0
    total: int = 0

    @property
    def seconds(self) -> float:
        return self.last - self.started

    @property
    def rate_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


class ProgressReporter:
    """The ``(stage, done, total)`` callback the library calls; renders it and keeps per-stage timings."""

    def __init__(self, bar: Any | None, interval_s: float = STATUS_INTERVAL_S) -> None:
        self._bar = bar
        self._task = bar.add_task("starting", total=None, rate="") if bar is not None else None
        self._interval_s = interval_s
        self._started = time.monotonic()
        self._last_line = self._started  # a step shorter than the interval prints nothing
        self.stages: dict[str, StageTiming] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        timing = self.stages.setdefault(stage, StageTiming(started=now, last=now))
        timing.last, timing.done, timing.total = now, done, total
        if self._bar is not None:
            rate = f"{timing.rate_per_s:,.1f}/s" if total and done else ""
            self._bar.update(self._task, description=stage, completed=done, total=total or None, rate=rate)
        elif now - self._last_line >= self._interval_s:
            self._last_line = now
            count = f" {done}/{total}" if total else ""
            err_console.print(f"{escape(stage)}:{count} ({now - self._started:.0f}s{rate_and_eta(timing)})")


def rate_and_eta(timing: StageTiming) -> str:
    """``, 41.2/s, ETA 3m05s`` for a stage with a total that has made progress, else ``""``."""
    if not timing.total or timing.done <= 0 or timing.seconds <= 0:
        return ""
    rate = timing.rate_per_s
    left = (timing.total - timing.done) / rate if rate > 0 else 0.0
    minutes, seconds = divmod(int(left), 60)
    eta = f", ETA {minutes}m{seconds:02d}s" if timing.done < timing.total else ""
    return f", {rate:,.1f}/s{eta}"


@contextmanager
def progress(transient: bool = True) -> Iterator[ProgressReporter]:
    """A :class:`ProgressReporter`: a bar on a terminal, periodic status lines on stderr otherwise."""
    if not err_console.is_terminal:
        yield ProgressReporter(None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    speed = TextColumn("{task.fields[rate]}")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        speed,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=transient) as bar:
        yield ProgressReporter(bar)


WAITING = "waiting for first token…"


def token_status(stage: str, done: int, total: int, rate: float = 0.0) -> str:
    """``prefill 12,288/37,250 tokens (33%), 410 tok/s, ETA 61 s``; ``generate 20 tokens (limit 256), 3.1 tok/s``."""
    if stage == hooks.PREFILL and total > 0:
        text = f"prefill {done:,}/{total:,} tokens ({done / total:.0%})"
        if rate > 0:
            text += f", {rate:,.0f} tok/s"
            if done < total:
                text += f", ETA {(total - done) / rate:,.0f} s"
        return text
    if stage == hooks.GENERATE:
        return f"generate {done:,} tokens (limit {total:,})" + (f", {rate:,.1f} tok/s" if rate > 0 else "")
    return f"{stage} {done:,}/{total:,}" if total else stage


class TokenProgress:
    """The ``(stage, done, total)`` hook of :mod:`ragcache.progress`, rendered with rates and an ETA.

    ``live`` is a rich status (a terminal): every report updates its one line. Without it, a line
    goes to stderr when a prefill starts and ends and at most every ``interval_s`` in between.
    :meth:`stop` silences it once the answer's own text streams (the text is then the progress).
    """

    def __init__(self, live: Any | None, interval_s: float = STATUS_INTERVAL_S) -> None:
        self._live = live
        self._interval_s = interval_s
        self._first: dict[str, tuple[float, int]] = {}  # stage: (when, done) at its first report
        self._last_line = float("-inf")
        self._context = ""  # "prefix 2/3: " while the warmer walks its prefixes
        self._stopped = False

    def waiting(self) -> None:
        """Say that the backend was asked and nothing came back yet."""
        self._show(WAITING, force=True)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in (hooks.PREFILL, hooks.GENERATE):  # the warmer's own stage: prefixes done
            self._context = f"prefix {min(done + 1, total)}/{total}: " if done < total else ""
            self._first.clear()  # the next prefix's prefill starts its own rate
            return
        now = time.monotonic()
        started, first_done = self._first.setdefault(stage, (now, done))
        elapsed = now - started
        rate = (done - first_done) / elapsed if elapsed > 0 and done > first_done else 0.0
        edge = stage == hooks.PREFILL and (elapsed == 0 or done >= total)
        self._show(self._context + token_status(stage, done, total, rate), force=edge)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """Stop showing anything (the answer's text is about to stream)."""
        self._stopped = True
        if self._live is not None:
            self._live.stop()

    def _show(self, text: str, *, force: bool) -> None:
        if self._stopped:
            return
        if self._live is not None:
            self._live.update(escape(text))
            return
        now = time.monotonic()
        if force or now - self._last_line >= self._interval_s:
            self._last_line = now
            err_console.print(escape(text))


@contextmanager
def generation_progress() -> Iterator[TokenProgress]:
    """A :class:`TokenProgress` heard by the backend for the block (a live line on a terminal)."""
    if not err_console.is_terminal:
        reporter = TokenProgress(None)
        reporter.waiting()
        with hooks.scope(reporter):
            yield reporter
        return
    with err_console.status(WAITING) as status:
        reporter = TokenProgress(status)
        with hooks.scope(reporter):
            yield reporter


class _AnswerLine:
    """Whether an answer streamed to stdout still has its line open."""

    open = False


def begin_answer() -> None:
    """An answer starts streaming to stdout: its line is open until :func:`end_answer`."""
    _AnswerLine.open = True


def write_answer(text: str) -> None:
    """Write a piece of the answer to stdout, at once."""
    sys.stdout.write(text)
    sys.stdout.flush()


def end_answer() -> None:
    """End the open answer line (once): after the answer, or before a note or status line on stderr."""
    if _AnswerLine.open:
        _AnswerLine.open = False
        sys.stdout.write("\n")
        sys.stdout.flush()
