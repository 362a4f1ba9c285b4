"""The prefix KV store of the local engine: attention KV of prompt prefixes, reused.

A prompt is cut into **blocks** at message boundaries of its rendered chat
template (the stable system message first, then session context and each
history message). A block holds only its own tokens' keys and values and is
named by a chain hash: ``key = chain_hash([parent_key, hash(its token ids)])``,
so equal keys mean equal token prefixes (vLLM's automatic prefix caching, at
message granularity). A request reuses the longest chain of blocks that is
present (:meth:`KVStore.match`) and stores the blocks it computed
(:meth:`KVStore.put`, which says in an :class:`InsertResult` why it did not).

- bounded by a byte budget, least-recently-used blocks evicted first; a matched
  chain is touched leaf first, so a hot root (the corpus prefix) outlives the
  per-session blocks that hang off it; evicting a block evicts its descendants,
  which could never be reached again;
- optional idle TTL (a block expires ``ttl_s`` after its last use), with an
  injectable clock for tests;
- never written by a request: :meth:`KVStore.put` stores a private copy, and
  requests read matched blocks in place, read-only (the shared-prefix attention);
- thread-safe (one lock; the tensor copy of ``put`` happens outside it);
- optional persistence of blocks marked ``persist`` (the stable prefix) through
  :class:`~ragcache.backends.local.persist.KVFiles`, loaded on a miss, so a
  restarted process skips the corpus prefill (cache-augmented generation).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ragcache.backends.local.persist import KVFiles

__all__ = ["InsertResult", "InsertStatus", "KVBlock", "KVStore", "Layers", "MatchResult"]

Layers = tuple[tuple[Any, Any], ...]  # per layer: (keys, values), shape [batch, heads, tokens, head_dim]

InsertStatus = Literal["stored", "present", "over-budget", "orphaned", "disabled"]


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
class InsertResult:
    """What :meth:`KVStore.put` did with a block.

    ``stored``: copied in now; ``present``: it was already there (and is now
    most recently used); ``over-budget``: it (with the chain it hangs from) does
    not fit the byte budget; ``orphaned``: its parent is not in the store, so it
    could never be matched; ``disabled``: the budget is zero.
    """

    status: InsertStatus

    @property
    def stored(self) -> bool:
        return self.status == "stored"

    @property
    def present(self) -> bool:
        """The block is in the store after the call (a child of it may follow)."""
        return self.status in ("stored", "present")


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
        files: KVFiles | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self.ttl_s = ttl_s
        self.files = files
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._children: dict[str, set[str]] = {}
        self._bytes = 0
        self._lock = threading.RLock()

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
            return MatchResult(tuple(found))

    def put(self, block: KVBlock) -> InsertResult:
        """Store a private copy of ``block`` (and write it to disk if it is marked ``persist``)."""
        with self._lock:
            self._expire()
            refused = self._refusal(block)
            if refused is not None:
                return refused
        stored = KVBlock(block.key, block.parent, block.tokens, _copy_layers(block.layers), block.persist)
        with self._lock:  # the copy ran unlocked: another thread may have stored or evicted meanwhile
            refused = self._refusal(stored)
            if refused is not None:
                return refused
            self._insert(stored)
            self._touch(self._chain(stored.key))
            self._evict(keep=stored.key)
            if stored.key not in self._entries:
                return InsertResult("over-budget")  # its ancestors had to go, and it with them
        if stored.persist and self.files is not None:
            self.files.save(stored)
        return InsertResult("stored")

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

    def clear(self) -> None:
        """Drop every block held in memory (files on disk stay)."""
        with self._lock:
            self._entries.clear()
            self._children.clear()
            self._bytes = 0

    # --- helpers ----------------------------------------------------------------

    def _refusal(self, block: KVBlock) -> InsertResult | None:
        """Why ``block`` cannot be inserted now (None: it can); called with the lock held."""
        if self.budget_bytes == 0:
            return InsertResult("disabled")
        if block.key in self._entries:
            self._touch([block.key])
            return InsertResult("present")
        if block.parent is not None and block.parent not in self._entries:
            return InsertResult("orphaned")  # its parent was evicted meanwhile
        if block.nbytes > self.budget_bytes:
            return InsertResult("over-budget")
        return None

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

    def _remove(self, key: str) -> None:
        """Remove ``key`` and its descendants."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= entry.block.nbytes
        if entry.block.parent is not None:
            self._children.get(entry.block.parent, set()).discard(key)
        for child in list(self._children.pop(key, ())):
            self._remove(child)

    def _evict(self, keep: str) -> None:
        while self._bytes > self.budget_bytes:
            victim = next((k for k in self._entries if k != keep), None)
            if victim is None:
                break
            self._remove(victim)

    def _chain(self, key: str | None) -> list[str]:
        """``key`` and its ancestors, root first."""
        chain = []
        while key is not None and key in self._entries:
            chain.append(key)
            key = self._entries[key].block.parent
        return chain[::-1]

    def _expire(self) -> None:
        if self.ttl_s is None:
            return
        deadline = self._clock() - self.ttl_s
        for key in [k for k, e in self._entries.items() if e.last_used < deadline]:
            self._remove(key)

    def _load(self, key: str) -> _Entry | None:
        """A persisted block put back in memory, if its parent is here and it fits (lock held)."""
        if self.files is None or self.budget_bytes == 0:
            return None
        block = self.files.load(key)
        if block is None or (block.parent is not None and block.parent not in self._entries):
            return None
        if block.nbytes > self.budget_bytes:
            return None
        self._insert(block)
        self._evict(keep=key)
        return self._entries.get(key)


def _copy_layers(layers: Layers) -> Layers:
    return tuple((k.detach().clone(), v.detach().clone()) for k, v in layers)
