"""One build at a time per build folder, and cleanup of what a killed build left.

A build holds an exclusive ``fcntl.flock`` on ``.<out>.lock`` beside the build
folder (the folder itself is swapped, so the lock cannot live inside it). The
kernel drops the lock when the holder exits, however it exits, so a SIGKILLed
build never leaves a stale lock. Under the lock nothing else builds into
``out``, so the temporary folders a killed build left (``.<out>.tmp-*``) are
removed, and a previous build caught between the two renames of the swap
(``.<out>.old-*/build`` with ``out`` missing) is put back.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from ragcache.errors import CorpusError

__all__ = ["build_lock", "lock_path"]


def lock_path(out: Path) -> Path:
    """The lock file of the build folder ``out``."""
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def build_lock(
    out: Path, *, wait: bool = True, progress: Callable[[str, int, int], None] | None = None
) -> Iterator[None]:
    """Hold the build lock of ``out``: wait for another build (``wait``) or raise CorpusError naming the folder."""
    path = lock_path(out)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            if not wait:
                raise CorpusError(
                    f"{out}: another build of this folder is running{who}, holding {path}; "
                    "wait for it to finish or build into another --out"
                ) from None
            if progress:
                progress(f"waiting for another build of {out}{who}", 0, 1)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        recover_interrupted(out)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def recover_interrupted(out: Path) -> None:
    """Remove a killed build's temporary folders; restore a previous build left mid-swap. Call under the lock."""
    for old in sorted(out.parent.glob(f".{out.name}.old-*")):
        if not out.exists() and (old / "build" / "manifest.json").exists():
            os.replace(old / "build", out)
        shutil.rmtree(old, ignore_errors=True)
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
