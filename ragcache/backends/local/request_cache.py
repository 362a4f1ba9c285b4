"""The per-request transformers cache of the local engine.

transformers' ``DynamicLayer`` grows by ``torch.cat`` on every forward pass, so
each decoded token copies the whole KV (~175 MB for a 3.8k-token prompt of
SmolLM2-135M). :class:`GrowingLayer` writes into a buffer with spare room and
hands out views instead: the prefix is copied once, out of the store's blocks,
into a buffer private to the request; the store's tensors are never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ragcache.backends.local.kvstore import KVBlock

__all__ = ["GrowingLayer", "can_reuse_prefixes", "request_cache"]


class GrowingLayer(DynamicLayer):
    """A dynamic layer over a preallocated buffer; capacity doubles when it runs out."""

    def __init__(self, reserve: int = 256) -> None:
        super().__init__()
        self.reserve = reserve
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def fill(self, parts: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Start from a prefix given as consecutive (keys, values) parts: one copy."""
        first = parts[0][0]
        total = sum(k.shape[-2] for k, _ in parts)
        self._allocate(first, total + self.reserve)
        for keys, values in parts:
            self._write(keys, values)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self._keys is None:
            self._allocate(key_states, key_states.shape[-2] + self.reserve)
        self._write(key_states, value_states)
        return self.keys, self.values

    def _allocate(self, like: torch.Tensor, capacity: int) -> None:
        batch, heads, _, dim = like.shape
        self.lazy_initialization(like, like)
        old_k, old_v = self._keys, self._values
        self._keys = like.new_empty((batch, heads, capacity, dim))
        self._values = like.new_empty((batch, heads, capacity, dim))
        if old_k is not None and old_v is not None:
            self._keys[..., : self.length, :] = old_k[..., : self.length, :]
            self._values[..., : self.length, :] = old_v[..., : self.length, :]
        self._expose()

    def _write(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        assert self._keys is not None and self._values is not None
        end = self.length + keys.shape[-2]
        if end > self._keys.shape[-2]:
            self._allocate(keys, max(end, 2 * self._keys.shape[-2]))
        self._keys[..., self.length : end, :] = keys
        self._values[..., self.length : end, :] = values
        self.length = end
        self._expose()

    def _expose(self) -> None:
        assert self._keys is not None and self._values is not None
        self.keys = self._keys[..., : self.length, :]
        self.values = self._values[..., : self.length, :]


def can_reuse_prefixes(config: Any) -> bool:
    """Whether every attention layer keeps its whole KV (sliding-window or shared layers do not)."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers)


def request_cache(config: Any, blocks: Sequence[KVBlock], reserve: int, device: Any = None) -> DynamicCache:
    """A new cache holding a private copy of ``blocks`` (moved to ``device``) with room for ``reserve`` more tokens.

    Models whose layers cannot reuse a prefix (:func:`can_reuse_prefixes`) get
    transformers' own cache, which must then start empty.
    """
    cache = DynamicCache(config=config)
    if not all(type(layer) is DynamicLayer for layer in cache.layers):
        if blocks:
            raise ValueError("this model's cache layers cannot start from stored prefix blocks")
        return cache
    cache.layers = [GrowingLayer(reserve) for _ in cache.layers]
    for i, layer in enumerate(cache.layers):
        if blocks:
            layer.fill([_on(device, *block.layers[i]) for block in blocks])
    return cache


def _on(device: Any, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A block's tensors on ``device`` (blocks loaded from disk live on the CPU)."""
    if device is None or keys.device == device:
        return keys, values
    return keys.to(device), values.to(device)
