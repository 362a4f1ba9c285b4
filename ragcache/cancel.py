"""A generation's consumer went away: the cancel signal, across layers that do not pass it along.

The server runs each generation's blocking iterator in a thread of its own
(``server/stream.py``) and sets that generation's cancel event when the client
hangs up. The iterator blocks inside the backend (the local engine waits on its
batcher's queue), and the facade between them (``RagCache.stream``) has no
cancel argument, so the event travels in a context variable: the thread sets it
with :func:`scope` around the iteration, and a backend that waits reads it with
:func:`current` and stops waiting once it is set. Without it, a request still
queued when its client left stayed queued, and was prefilled, for nobody
(issue 27 item 7).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["current", "scope"]

_event: ContextVar[threading.Event | None] = ContextVar("ragcache_cancel", default=None)


def current() -> threading.Event | None:
    """The cancel event of the generation this thread is running, if its caller set one."""
    return _event.get()


@contextlib.contextmanager
def scope(event: threading.Event) -> Iterator[None]:
    """Make ``event`` the :func:`current` cancel event of this thread while the block runs."""
    token = _event.set(event)
    try:
        yield
    finally:
        _event.reset(token)
