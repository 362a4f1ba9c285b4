"""What the CLI prints besides results: errors, quiet library logging, progress.

The library reports progress through a plain callback ``(stage, done, total)``;
:class:`ProgressReporter` renders it as a rich bar on a terminal and as a
one-line status at most every few seconds otherwise (logs of CI runs, pipes).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ragcache.errors import RagCacheError

__all__ = ["ProgressReporter", "StageTiming", "console", "err_console", "handle_errors", "progress", "quiet_libraries"]

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
    handler = logging.StreamHandler()
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
        self._task = bar.add_task("starting", total=None) if bar is not None else None
        self._interval_s = interval_s
        self._started = time.monotonic()
        self._last_line = self._started  # a step shorter than the interval prints nothing
        self.stages: dict[str, StageTiming] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        timing = self.stages.setdefault(stage, StageTiming(started=now, last=now))
        timing.last, timing.done, timing.total = now, done, total
        if self._bar is not None:
            self._bar.update(self._task, description=stage, completed=done, total=total or None)
        elif now - self._last_line >= self._interval_s:
            self._last_line = now
            count = f" {done}/{total}" if total else ""
            err_console.print(f"{escape(stage)}:{count} ({now - self._started:.0f}s)")


@contextmanager
def progress(transient: bool = True) -> Iterator[ProgressReporter]:
    """A :class:`ProgressReporter`: a bar on a terminal, periodic status lines on stderr otherwise."""
    if not err_console.is_terminal:
        yield ProgressReporter(None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=transient) as bar:
        yield ProgressReporter(bar)
