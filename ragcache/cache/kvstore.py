"""The prefix KV store of the local backend: attention KV of prompt prefixes, reused.

A prompt is cut into **blocks** at message boundaries of its rendered chat
template (the stable system message first, then session context and each
history message). A block holds only its own tokens' keys and values and is
named by a chain hash: ``key = chain_hash([parent_key, hash(its token ids)])``,
so equal keys mean equal token prefixes (vLLM's automatic prefix caching, at
message granularity). A request reuses the longest chain of blocks that is
present and computes the rest.

- bounded by a byte budget, least-recently-used blocks evicted first; a matched
  chain is touched leaf first, so a hot root (the corpus prefix) outlives the
  per-session blocks that hang off it; evicting a block evicts its descendants,
  which could never be reached again;
- optional idle TTL (a block expires ``ttl_s`` after its last use), with an
  injectable clock for tests;
- never mutated by a request: :meth:`put` stores private copies and
  :meth:`assemble` returns fresh tensors, because a transformers cache grows
  (and may be changed) by the forward pass that uses it;
- thread-safe (one lock; the tensor copies of ``assemble`` happen outside it);
- optional persistence of blocks marked ``persist`` (the stable prefix) as
  safetensors files under ``persist_dir``, loaded on a miss, so a restarted
  process skips the corpus prefill (cache-augmented generation).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KVBlock", "KVStore", "MatchResult", "StoreStats", "assemble"]

log = logging.getLogger("ragcache.kvstore")

Layers = tuple[tuple[Any, Any], ...]  # per layer: (keys, values), shape [batch, heads, tokens, head_dim]


@dataclass(frozen=True)
class KVBlock:
    """The KV of one block of tokens, following the block named ``parent``."""

    key: str
    parent: str | None
    tokens: int
    layers: Layers = field(repr=False, compare=False)
    persist: bool = False

    @property
    def nbytes(self) -> int:
        return sum(int(k.nbytes) + int(v.nbytes) for k, v in self.layers)


@dataclass(frozen=True)
class MatchResult:
    """The longest present chain of blocks for a request, root first."""

    blocks: tuple[KVBlock, ...] = ()

    @property
    def tokens(self) -> int:
        return sum(block.tokens for block in self.blocks)

    @property
    def key(self) -> str | None:
        return self.blocks[-1].key if self.blocks else None


@dataclass(frozen=True)
class StoreStats:
    blocks: int
    bytes: int
    budget_bytes: int
    hits: int
    misses: int
    evictions: int
    expirations: int


@dataclass
class _Entry:
    block: KVBlock
    last_used: float


class KVStore:
    """Blocks of prefix KV by chain key: LRU within a byte budget, optional TTL and disk copy."""

    def __init__(
        self,
        budget_bytes: int,
        *,
        ttl_s: float | None = None,
        persist_dir: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self.ttl_s = ttl_s
        self.persist_dir = Path(persist_dir).expanduser() if persist_dir is not None else None
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._children: dict[str, set[str]] = {}
        self._bytes = 0
        self._lock = threading.RLock()
        self._hits = self._misses = self._evictions = self._expirations = 0

    # --- public API -------------------------------------------------------------

    def match(self, keys: Sequence[str]) -> MatchResult:
        """The longest prefix of ``keys`` (a chain, root first) whose blocks are all present."""
        with self._lock:
            self._expire()
            found: list[KVBlock] = []
            for key in keys:
                entry = self._entries.get(key) or self._load(key)
                if entry is None:
                    break
                found.append(entry.block)
            self._touch([block.key for block in found])
            if found:
                self._hits += 1
            else:
                self._misses += 1
            return MatchResult(tuple(found))

    def put(self, block: KVBlock) -> bool:
        """Store a private copy of ``block``; False if it is larger than the whole budget or orphaned."""
        with self._lock:
            self._expire()
            if block.key in self._entries:
                self._touch([block.key])
                return False
            if block.parent is not None and block.parent not in self._entries:
                return False  # its parent was evicted meanwhile: it could never be matched
            if block.nbytes > self.budget_bytes:
                return False
        stored = KVBlock(block.key, block.parent, block.tokens, _copy_layers(block.layers), block.persist)
        with self._lock:
            if block.key in self._entries or (block.parent is not None and block.parent not in self._entries):
                return False
            self._insert(stored)
            self._touch(self._chain(stored.key))
            self._evict(keep=stored.key)
            stored_now = stored.key in self._entries
        if stored_now and stored.persist and self.persist_dir is not None:
            self._save(stored)
        return stored_now

    def touch(self, keys: Sequence[str]) -> None:
        """Mark a chain (root first) as just used, root most recent."""
        with self._lock:
            self._touch([k for k in keys if k in self._entries])

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(
                len(self._entries), self._bytes, self.budget_bytes,
                self._hits, self._misses, self._evictions, self._expirations,
            )

    def clear(self) -> None:
        """Drop every block held in memory (files under ``persist_dir`` stay)."""
        with self._lock:
            self._entries.clear()
            self._children.clear()
            self._bytes = 0

    # --- helpers ----------------------------------------------------------------

    def _insert(self, block: KVBlock) -> None:
        self._entries[block.key] = _Entry(block, self._clock())
        if block.parent is not None:
            self._children.setdefault(block.parent, set()).add(block.key)
        self._bytes += block.nbytes

    def _touch(self, chain: list[str]) -> None:
        now = self._clock()
        for key in reversed(chain):  # leaf first: the root ends up most recently used
            self._entries[key].last_used = now
            self._entries.move_to_end(key)

    def _remove(self, key: str) -> int:
        """Remove ``key`` and its descendants; how many blocks went."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return 0
        self._bytes -= entry.block.nbytes
        if entry.block.parent is not None:
            self._children.get(entry.block.parent, set()).discard(key)
        return 1 + sum(self._remove(child) for child in list(self._children.pop(key, ())))

    def _evict(self, keep: str) -> None:
        while self._bytes > self.budget_bytes:
            victim = next((k for k in self._entries if k != keep), None)
            if victim is None:
                break
            self._evictions += self._remove(victim)

    def _chain(self, key: str) -> list[str]:
        """``key`` and its ancestors, root first."""
        chain = []
        while key is not None and key in self._entries:
            chain.append(key)
            key = self._entries[key].block.parent  # type: ignore[assignment]
        return chain[::-1]

    def _expire(self) -> None:
        if self.ttl_s is None:
            return
        deadline = self._clock() - self.ttl_s
        for key in [k for k, e in self._entries.items() if e.last_used < deadline]:
            self._expirations += self._remove(key)

    def _path(self, key: str) -> Path:
        assert self.persist_dir is not None
        return self.persist_dir / f"{key}.safetensors"

    def _save(self, block: KVBlock) -> None:
        """Write the block atomically; a failure is logged, never fatal (the cache is an optimisation)."""
        from safetensors.torch import save_file

        path = self._path(block.key)
        if path.exists():
            return
        tensors = {}
        for i, (keys, values) in enumerate(block.layers):
            tensors[f"k.{i}"], tensors[f"v.{i}"] = keys.contiguous().cpu(), values.contiguous().cpu()
        meta = {"key": block.key, "parent": block.parent or "", "tokens": str(block.tokens)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{block.key}.", dir=path.parent)
            os.close(fd)
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not persist KV block %s to %s: %s", block.key[:12], path, exc)

    def _load(self, key: str) -> _Entry | None:
        """A persisted block, put back in memory (called with the lock held)."""
        if self.persist_dir is None or not self._path(key).exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(self._path(key)), framework="pt") as f:
                meta = f.metadata() or {}
                count = len({name.split(".")[1] for name in f.keys()})  # noqa: SIM118 (safe_open is not a dict)
                layers = tuple((f.get_tensor(f"k.{i}"), f.get_tensor(f"v.{i}")) for i in range(count))
        except Exception as exc:  # a corrupt or foreign file is a miss, not an error
            log.warning("ignoring unreadable KV file %s: %s", self._path(key), exc)
            return None
        parent = meta.get("parent") or None
        if meta.get("key") != key or (parent is not None and parent not in self._entries):
            return None
        block = KVBlock(key, parent, int(meta.get("tokens", "0")), layers, persist=True)
        if block.nbytes > self.budget_bytes:
            return None
        self._insert(block)
        self._evict(keep=key)
        return self._entries.get(key)


def _copy_layers(layers: Layers) -> Layers:
    return tuple((k.detach().clone(), v.detach().clone()) for k, v in layers)


def assemble(blocks: Sequence[KVBlock]) -> Layers:
    """Fresh per-layer tensors for a chain of blocks (concatenated along the token axis)."""
    import torch

    if not blocks:
        return ()
    count = len(blocks[0].layers)
    return tuple(
        (
            torch.cat([b.layers[i][0] for b in blocks], dim=-2),
            torch.cat([b.layers[i][1] for b in blocks], dim=-2),
        )
        for i in range(count)
    )
