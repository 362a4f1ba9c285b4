"""How far a generation's prefill and decoding are: a hook across layers that do not pass it along.

The CLI wants to show a long CPU prefill as it runs (``prefill 12,288/37,250
tokens``), but the facade between it and the backend (``RagCache.stream``,
``Warmer.warm``) has no progress argument, and the local engine prefills in
its batcher's thread. So the callback travels like the cancel signal
(:mod:`ragcache.cancel`): the CLI sets it with :func:`scope` around a call; the
local engine reads it with :func:`current` in the caller's thread, keeps it with
the request, and calls it ``(stage, done, total)`` after each prefill chunk
(``"prefill"``, prompt tokens done, prompt tokens) and each generated token
(``"generate"``, output tokens, output token limit). A backend that cannot
tell how far it is (a vendor API) never calls it. Nothing is shown or stored
here: rendering is the CLI's (docs/architecture.md, "cli/").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

__all__ = ["GENERATE", "PREFILL", "Hook", "current", "report", "scope"]

Hook = Callable[[str, int, int], None]  # (stage, done, total)
PREFILL = "prefill"
GENERATE = "generate"

_hook: ContextVar[Hook | None] = ContextVar("ragcache_progress", default=None)


def current() -> Hook | None:
    """The progress callback of the call this thread is running, if its caller set one."""
    return _hook.get()


@contextlib.contextmanager
def scope(hook: Hook | None) -> Iterator[None]:
    """Make ``hook`` the :func:`current` progress callback of this thread while the block runs."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)


def report(hook: Hook | None, stage: str, done: int, total: int) -> None:
    """Call ``hook`` if there is one; a failing display never fails the generation."""
    if hook is None:
        return
    with contextlib.suppress(Exception):
        hook(stage, done, total)
