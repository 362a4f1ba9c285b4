"""Prefix KV blocks on disk: one safetensors file per block, checked before use.

The local engine persists its stable prefixes by default, under
``$RAGCACHE_KV_DIR`` or ``<cache home>/kv`` (:func:`resolve_dir`), so the next
``ragcache ask`` process starts warm. The folder is bounded
(``cache.persist_max_mb``): after each write the least recently used files
(by modification time, which a load refreshes) are deleted until it fits.
Several processes may share the folder: every write is a rename, every removal
tolerates a file already gone.

A file carries its block key, parent, token count, the fingerprint of the
model the KV was computed with, and a SHA-256 of its tensors. A file that
cannot be read, whose checksum does not match (a torn or corrupted write) or
that belongs to another model is ignored with a warning and removed: the engine
then recomputes the prefix, it never crashes on a cache file. Writes go to a
temporary file that is renamed into place. A file already at a block's path is
kept only if it is known good (this process loaded or wrote it, or it passes
the checks); a torn or stale one is replaced, so the next start does not pay the
recompute again. A failed write (a full disk: ``OSError`` or safetensors' own
``SafetensorError``) is logged and counted, its temporary file removed, and the
block stays "not persisted": the next save of it tries again (the cache is an
optimisation; a persistence failure never fails a request or a warm-up).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragcache.backends.local.kvstore import KVBlock

__all__ = [
    "FORMAT",
    "KV_DIR_ENV",
    "DiskUsage",
    "KVFiles",
    "PersistStats",
    "clear",
    "disk_usage",
    "resolve_dir",
]

log = logging.getLogger(__name__)

FORMAT = "ragcache-kv/1"
KV_DIR_ENV = "RAGCACHE_KV_DIR"  # the folder, apart from RAGCACHE_HOME (tests move it without moving the model)
_SUFFIX = ".safetensors"
_STALE_TEMP_S = 3600.0  # a temporary file this old belongs to a writer that died


def resolve_dir(configured: str | Path | None = None) -> Path:
    """The KV folder: ``cache.persist_dir`` if set, else ``$RAGCACHE_KV_DIR``, else ``<cache home>/kv``."""
    from ragcache.models import cache_home

    if configured:
        return Path(configured).expanduser()
    env = os.environ.get(KV_DIR_ENV)
    return Path(env).expanduser() if env else cache_home() / "kv"


@dataclass(frozen=True)
class DiskUsage:
    """Block files in a KV folder and their bytes."""

    files: int
    bytes: int


def disk_usage(directory: str | Path) -> DiskUsage:
    """What the KV folder holds now (block files only; a missing folder holds nothing)."""
    sizes = [size for _, _, size in _block_files(Path(directory))]
    return DiskUsage(len(sizes), sum(sizes))


def clear(directory: str | Path) -> DiskUsage:
    """Delete every block file (and leftover temporary file) in the KV folder; what was removed."""
    folder = Path(directory)
    removed = disk_usage(folder)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() and (path.suffix == _SUFFIX or path.name.startswith(".")):
                with contextlib.suppress(OSError):
                    path.unlink()
    return removed


@dataclass
class PersistStats:
    """What saving did in this process: blocks written, kept, replaced, and failures (the last one's reason)."""

    written: int = 0
    replaced: int = 0  # an unusable file (torn, corrupt) at the block's path was overwritten
    failed: int = 0  # "not persisted": logged, temp file removed, retried on the block's next save
    last_error: str = ""
    not_persisted: set[str] = field(default_factory=set)  # keys whose last save failed


class KVFiles:
    """The folder of persisted blocks for one model (named by its fingerprint)."""

    def __init__(
        self, directory: str | Path, fingerprint: str, *, device: Any = None, max_bytes: int | None = None
    ) -> None:
        self.directory = Path(directory).expanduser()
        self.fingerprint = fingerprint
        self.max_bytes = max_bytes  # None: unbounded; else the LRU files beyond it are deleted after a write
        self.device = device  # where loaded blocks go: requests read them in place, on the model's device
        self.stats = PersistStats()
        self._good: set[str] = set()  # keys whose file on disk this process loaded or wrote whole

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def save(self, block: KVBlock) -> bool:
        """Write ``block`` atomically unless a usable file for it exists; False if it is not persisted."""
        from safetensors.torch import save_file

        path = self.path(block.key)
        replacing = False
        if path.exists():
            if block.key in self._good or self._usable(block.key):
                self._good.add(block.key)
                return True
            replacing = True  # a torn or corrupt file: replace it, or every start recomputes the prefix
        if self.max_bytes is not None and block.nbytes > self.max_bytes:
            self.stats.not_persisted.add(block.key)
            log.info("KV block %s (%d bytes) exceeds cache.persist_max_mb: not persisted", block.key[:12], block.nbytes)
            return False
        tensors = {}
        for i, (keys, values) in enumerate(block.layers):
            tensors[f"k.{i}"], tensors[f"v.{i}"] = keys.contiguous().cpu(), values.contiguous().cpu()
        meta = {
            "format": FORMAT,
            "model": self.fingerprint,
            "key": block.key,
            "parent": block.parent or "",
            "tokens": str(block.tokens),
            "sha256": _checksum(tensors),
        }
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{block.key}.", dir=path.parent)
            os.close(fd)
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        except Exception as exc:  # OSError, or safetensors' SafetensorError on a full disk: never fatal
            self.stats.failed += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            self.stats.not_persisted.add(block.key)
            log.warning("could not persist KV block %s to %s (%s: %s): not persisted; it stays in memory and "
                        "its next save retries", block.key[:12], path, type(exc).__name__, exc)  # fmt: skip
            if tmp is not None:
                with contextlib.suppress(OSError):
                    Path(tmp).unlink(missing_ok=True)
            return False
        self._good.add(block.key)
        self.stats.not_persisted.discard(block.key)
        self.stats.written += 1
        if replacing:
            self.stats.replaced += 1
            log.info("replaced the unusable KV file %s", path)
        self.evict(keep=path)
        return True

    def evict(self, keep: Path | None = None) -> DiskUsage:
        """Delete the least recently used files until the folder fits :attr:`max_bytes`; what was removed.

        ``keep`` (the file just written) goes last. Temporary files older than an hour (a writer that
        died mid-write) go too. Another process may evict at the same time: a file already gone is skipped.
        """
        now, files, removed = time.time(), 0, 0
        for path in self.directory.glob(".*") if self.directory.is_dir() else ():
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > _STALE_TEMP_S:
                    path.unlink()
        if self.max_bytes is None:
            return DiskUsage(0, 0)
        entries = sorted(_block_files(self.directory), key=lambda e: (e[0] == keep, e[1], e[0].name))
        total = sum(size for _, _, size in entries)
        for path, _, size in entries:
            if total <= self.max_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                files, removed = files + 1, removed + size
                self._good.discard(path.name[: -len(_SUFFIX)])
            total -= size
        if files:
            log.info("evicted %d least recently used KV file(s) (%d bytes) from %s", files, removed, self.directory)
        return DiskUsage(files, removed)

    def _usable(self, key: str) -> bool:
        """Whether the file at ``key``'s path passes every check (read and checksummed)."""
        try:
            meta, tensors = _read(self.path(key))
        except Exception:  # torn header: safetensors' own error types
            return False
        return self._problem(key, meta, tensors) is None

    def load(self, key: str) -> KVBlock | None:
        """The block stored under ``key``; None if there is none or it is unusable (logged)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            meta, tensors = _read(path)
        except FileNotFoundError:  # another process evicted it meanwhile
            return None
        except Exception as exc:  # safetensors raises its own error types for torn headers
            self._drop(path, key, f"ignoring unreadable KV file {path} (removed): {exc}")
            return None
        problem = self._problem(key, meta, tensors)
        if problem:
            self._drop(path, key, f"ignoring KV file {path} (removed): {problem}")
            return None
        self._good.add(key)
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used: the size bound evicts by modification time
        count = len(tensors) // 2
        layers = tuple((tensors[f"k.{i}"], tensors[f"v.{i}"]) for i in range(count))
        if self.device is not None:
            layers = tuple((k.to(self.device), v.to(self.device)) for k, v in layers)
        return KVBlock(key, meta["parent"] or None, int(meta["tokens"]), layers, persist=True)

    def _drop(self, path: Path, key: str, message: str) -> None:
        """Warn about an unusable file and remove it (its block is recomputed and written anew)."""
        log.warning("%s", message)
        self._good.discard(key)
        with contextlib.suppress(OSError):
            path.unlink()

    def _problem(self, key: str, meta: dict[str, str], tensors: dict[str, Any]) -> str | None:
        """Why a file's content cannot be used as the block ``key`` (None: it can)."""
        if meta.get("format") != FORMAT:
            return f"format {meta.get('format')!r}, expected {FORMAT!r}"
        if meta.get("model") != self.fingerprint:
            return "computed with another model (fingerprint differs)"
        if meta.get("key") != key:
            return "its key does not match its file name"
        if not meta.get("tokens", "").isdigit() or len(tensors) % 2 or not tensors:
            return "incomplete metadata or tensors"
        if meta.get("sha256") != _checksum(tensors):
            return "checksum mismatch (a torn or corrupted write)"
        return None


def _block_files(folder: Path) -> list[tuple[Path, float, int]]:
    """(path, modification time, bytes) of each block file; files removed meanwhile are left out."""
    out = []
    for path in folder.glob(f"*{_SUFFIX}") if folder.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            out.append((path, stat.st_mtime, stat.st_size))
    return out


def _read(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    return meta, tensors


def _checksum(tensors: dict[str, Any]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order (an integrity check, not a name)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # a buffer: no copy
    return digest.hexdigest()
