"""The per-request KV of the local engine: stored prefix blocks by reference, its own tokens in a buffer.

A request reuses the longest chain of stored blocks (:class:`~.kvstore.KVBlock`)
**in place**: its :class:`RequestCache` keeps references to the blocks' tensors
and never copies or writes them; the shared-prefix attention
(:mod:`~ragcache.backends.local.attention`) reads them where they are. Only the
request's own tokens (those after the matched chain: the rest of the prompt,
then each decoded token) go into buffers of its own, one :class:`OwnLayer` per
attention layer, preallocated with spare room so a decoded token is one write,
not a ``torch.cat`` of the whole KV.

A block evicted from the store while a request reads it stays alive (the
request holds a reference) until the request ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ragcache.backends.local.kvstore import KVBlock

__all__ = ["OwnLayer", "RequestCache", "can_reuse_prefixes", "plain_cache"]


class OwnLayer:
    """One layer's keys and values of a request's own tokens, in a buffer that doubles when full."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity  # tokens of the first allocation
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    @classmethod
    def over(cls, keys: torch.Tensor, values: torch.Tensor) -> OwnLayer:
        """An empty layer writing into the given buffers (``[1, kv_heads, capacity, head_dim]``), which it
        never reallocates while they have room: a captured CUDA graph writes at fixed addresses."""
        layer = cls(keys.shape[-2])
        layer._keys, layer._values = keys, values
        return layer

    @property
    def keys(self) -> torch.Tensor:
        assert self._keys is not None
        return self._keys[..., : self.length, :]

    @property
    def values(self) -> torch.Tensor:
        assert self._values is not None
        return self._values[..., : self.length, :]

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add ``keys``/``values`` (``[1, kv_heads, tokens, head_dim]``); all of this layer's own KV so far."""
        end = self.length + keys.shape[-2]
        if self._keys is None or end > self._keys.shape[-2]:
            self._grow(keys, max(end, self.capacity, 2 * (self._keys.shape[-2] if self._keys is not None else 0)))
        assert self._keys is not None and self._values is not None
        self._keys[..., self.length : end, :] = keys
        self._values[..., self.length : end, :] = values
        self.length = end
        return self.keys, self.values

    def reserve(self, like: torch.Tensor, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Room for ``tokens`` more (shaped like ``like``): the key and value slices they go into."""
        end = self.length + tokens
        if self._keys is None or end > self._keys.shape[-2]:
            self._grow(like, max(end, self.capacity, 2 * (self._keys.shape[-2] if self._keys is not None else 0)))
        assert self._keys is not None and self._values is not None
        slices = self._keys[..., self.length : end, :], self._values[..., self.length : end, :]
        self.length = end
        return slices

    def _grow(self, like: torch.Tensor, capacity: int) -> None:
        batch, heads, _, dim = like.shape
        old_k, old_v = self._keys, self._values
        self._keys = like.new_empty((batch, heads, capacity, dim))
        self._values = like.new_empty((batch, heads, capacity, dim))
        if old_k is not None and old_v is not None and self.length:
            self._keys[..., : self.length, :] = old_k[..., : self.length, :]
            self._values[..., : self.length, :] = old_v[..., : self.length, :]


@dataclass
class RequestCache:
    """A request's KV: the matched chain of stored ``blocks`` (read-only, by reference), then its own tokens."""

    blocks: tuple[KVBlock, ...]
    layers: list[OwnLayer] = field(repr=False)

    @classmethod
    def create(
        cls, blocks: Sequence[KVBlock], num_layers: int, capacity: int, device: Any = None, *, inline_tokens: int = 0
    ) -> RequestCache:
        """A cache over ``blocks`` with room for ``capacity`` own tokens before its buffers grow.

        The chain's trailing private blocks (not ``persist``: a session's context and
        history, which no other session reads) are copied into the own buffers when
        they hold at most ``inline_tokens`` in all: read in place, each would be one
        more attention call per layer and step, and merge, for a few dozen tokens.
        The choice depends on the request alone, never on what it is batched with.
        """
        blocks = tuple(_on(device, block) for block in blocks)
        shared = len(blocks)
        while shared and not blocks[shared - 1].persist:
            shared -= 1
        private = sum(block.tokens for block in blocks[shared:])
        if private > inline_tokens:  # too long to copy: every block read in place
            shared, private = len(blocks), 0
        layers = [OwnLayer(capacity + private) for _ in range(num_layers)]
        for block in blocks[shared:]:
            for own, (keys, values) in zip(layers, block.layers, strict=True):
                own.append(keys, values)
        return cls(blocks[:shared], layers)

    def append_own(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """Add the same number of own tokens to every layer (``keys[i]``: layer i's), in one batched copy."""
        targets = [layer.reserve(k, k.shape[-2]) for layer, k in zip(self.layers, keys, strict=True)]
        sources = [x for pair in zip(keys, values, strict=True) for x in pair]
        torch._foreach_copy_([t for pair in targets for t in pair], sources)

    @property
    def start(self) -> int:
        """Tokens of the stored prefix: the position of the first own token."""
        return sum(block.tokens for block in self.blocks)

    @property
    def length(self) -> int:
        return self.start + self.layers[0].length

    def own(self, layer: int, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of absolute positions ``[start, end)`` (all own tokens) of ``layer``."""
        first = self.start
        if start < first:
            raise ValueError(f"positions {start}..{end} reach into the stored prefix (own tokens start at {first})")
        own = self.layers[layer]
        return own.keys[..., start - first : end - first, :], own.values[..., start - first : end - first, :]


def can_reuse_prefixes(config: Any) -> bool:
    """Whether every attention layer keeps its whole KV (sliding-window or shared layers do not)."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers)


def plain_cache(config: Any) -> DynamicCache:
    """transformers' own cache, for models the shared-prefix attention does not serve (no prefix reuse)."""
    return DynamicCache(config=config)


def _on(device: Any, block: KVBlock) -> KVBlock:
    """``block`` with its tensors on ``device`` (a block is only copied when it lives elsewhere)."""
    if device is None or all(_same(k.device, device) and _same(v.device, device) for k, v in block.layers):
        return block
    layers = tuple((k.to(device), v.to(device)) for k, v in block.layers)
    return KVBlock(block.key, block.parent, block.tokens, layers, block.persist)


def _same(a: torch.device, b: Any) -> bool:
    """``cuda`` and ``cuda:0`` name one device when the index is left out."""
    b = torch.device(b)
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)
