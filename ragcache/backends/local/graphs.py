"""A cached request's first forward replayed from a CUDA graph, not launched kernel by kernel.

A question over a stored prefix computes only its own few dozen tokens, and on a
GPU that forward is bound by the host issuing its ~2,000 kernels through
transformers' eager model, not by the GPU (docs/architecture.md, the local
backend). So the engine captures that forward once in a CUDA graph and replays
it: the GPU time stays, the per-kernel host cost goes.

A graph replays fixed shapes at fixed addresses, so:

- the own tokens are padded to a **bucket** (a power of two from
  :data:`MIN_TOKENS` to :data:`MAX_TOKENS`; longer own parts are compute-bound
  and run eagerly). Padding goes after the real tokens, and the own part's
  attention is causal, so no real token sees a pad; only the last real token's
  logits are kept;
- token ids, positions and that index live in one static input buffer per bucket,
  and the own keys and values go into static buffers per bucket, copied into the
  request's own cache after the replay (the request keeps them for its decode
  steps and for storing its blocks);
- the stored prefix blocks are read in place, so a graph is tied to the very
  blocks it was captured over: it keeps weak references to them and is used
  only while the request's matched blocks are those objects (an evicted and
  re-stored block is a new object: the graph is captured again). Only prefixes
  made of stable blocks (the shared corpus prefix) are captured: a session's
  history is read by its next turn only, and a capture costs a few forwards.

Graphs share one memory pool and are kept in a small LRU (:data:`MAX_GRAPHS`).
Only a request prefilled alone takes this path; a batched prefill and every
decode step run eagerly, as before. On CPU there is nothing to capture: the
switch (``backend.options.cuda_graphs``) resolves to off. ``capture=False``
runs the same static-buffer forward eagerly, which tests use on CPU to check
the padding and the copies. A capture that fails (an operation that cannot be
captured, in some torch or transformers version) turns graphs off for the
engine with one warning and the request runs eagerly.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from cachetools import LRUCache

from ragcache.backends.local.attention import CascadeBatch
from ragcache.backends.local.kvstore import KVBlock
from ragcache.backends.local.request_cache import OwnLayer, RequestCache

__all__ = ["MAX_GRAPHS", "MAX_TOKENS", "MIN_TOKENS", "ForwardGraphs", "bucket"]

log = logging.getLogger(__name__)

MIN_TOKENS = 16  # the smallest bucket: a question's own part is rarely shorter
MAX_TOKENS = 512  # above this the own part's matmuls, not the launches, take the time: eager
MAX_GRAPHS = 16  # captured (prefix, bucket) pairs kept; each holds only its graph, not the prefix


def bucket(tokens: int) -> int | None:
    """The padded length a forward of ``tokens`` own tokens replays at; None above :data:`MAX_TOKENS`."""
    if tokens < 1 or tokens > MAX_TOKENS:
        return None
    size = MIN_TOKENS
    while size < tokens:
        size *= 2
    return size


@dataclass
class _Static:
    """One bucket's fixed-address buffers: inputs (ids, positions, the kept index) and the own KV per layer."""

    size: int
    inputs: torch.Tensor  # [2 * size + 1] int64: ids, positions, index of the last real token
    keys: list[torch.Tensor]  # per layer [1, kv_heads, size, head_dim]
    values: list[torch.Tensor]
    mask: torch.Tensor  # a 4-D stand-in: the model skips building a mask (the cascade attention needs none)

    def cache(self, blocks: tuple[KVBlock, ...]) -> RequestCache:
        """A request cache over ``blocks`` whose own tokens go into these buffers."""
        return RequestCache(blocks, [OwnLayer.over(k, v) for k, v in zip(self.keys, self.values, strict=True)])


@dataclass
class _Graph:
    """A captured forward: its graph, the blocks it reads (weakly) and its output."""

    graph: Any  # torch.cuda.CUDAGraph
    blocks: tuple[weakref.ref[KVBlock], ...]
    logits: torch.Tensor

    def reads(self, blocks: tuple[KVBlock, ...]) -> bool:
        return len(blocks) == len(self.blocks) and all(ref() is b for ref, b in zip(self.blocks, blocks, strict=True))


@dataclass
class ForwardGraphs:
    """The captured first forwards of cached requests, one per (stored prefix, bucket); see the module docstring."""

    model: Any
    num_layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device
    capture: bool = True  # False: the same static-buffer forward, run eagerly (tests on CPU)
    runs: int = 0  # forwards that took this path (replayed, or static-buffer eager with capture=False)
    captures: int = 0
    replays: int = 0
    failed: str | None = None
    _static: dict[int, _Static] = field(default_factory=dict, repr=False)
    _graphs: LRUCache = field(default_factory=lambda: LRUCache(MAX_GRAPHS), repr=False)
    _pool: Any = field(default=None, repr=False)

    @classmethod
    def for_model(cls, model: Any, num_layers: int, device: torch.device, *, capture: bool = True) -> ForwardGraphs:
        config = model.config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        return cls(model, num_layers, kv_heads, head_dim, next(model.parameters()).dtype, device, capture=capture)

    def can_run(self, cache: Any, tokens: int) -> bool:
        """Whether a forward of ``tokens`` own tokens over ``cache`` takes this path (else: eager)."""
        return (
            self.failed is None
            and isinstance(cache, RequestCache)
            and bool(cache.blocks)
            and all(block.persist for block in cache.blocks)
            and cache.layers[0].length == 0
            and bucket(tokens) is not None
        )

    def run(self, cache: RequestCache, ids: list[int], eager: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The last token's logits ``[vocab]`` (float32) of ``ids`` after ``cache``'s blocks; the own KV into ``cache``.

        ``eager`` is the engine's own forward of the same request, run when the capture fails.
        """
        size = bucket(len(ids))
        assert size is not None and self.can_run(cache, len(ids))
        static = self._buffers(size)
        position = cache.start
        padded = ids + [ids[-1]] * (size - len(ids))
        host = torch.tensor([*padded, *range(position, position + size), len(ids) - 1], dtype=torch.long)
        static.inputs.copy_(host)
        if not self.capture:
            logits = self._forward(static, cache.blocks)
        else:
            key = (tuple(block.key for block in cache.blocks), size)
            entry = self._graphs.get(key)
            if entry is None or not entry.reads(cache.blocks):
                try:
                    entry = self._capture(static, cache.blocks)
                except Exception as exc:  # an op that cannot be captured: eager from now on
                    self.failed = f"{type(exc).__name__}: {exc}"
                    log.warning("CUDA graph capture failed (%s); the local engine runs eagerly", self.failed)
                    self._graphs.clear()
                    return eager()
                self._graphs[key] = entry
            entry.graph.replay()
            self.replays += 1
            logits = entry.logits
        self.runs += 1
        cache.append_own([k[..., : len(ids), :] for k in static.keys], [v[..., : len(ids), :] for v in static.values])
        return logits[0, -1].float()

    def clear(self) -> None:
        """Drop every graph and buffer (the engine closes)."""
        self._graphs.clear()
        self._static.clear()
        self._pool = None

    # --- helpers ----------------------------------------------------------------

    def _buffers(self, size: int) -> _Static:
        if size not in self._static:
            shape = (1, self.kv_heads, size, self.head_dim)
            make = lambda: torch.empty(shape, dtype=self.dtype, device=self.device)  # noqa: E731
            self._static[size] = _Static(
                size,
                torch.zeros(2 * size + 1, dtype=torch.long, device=self.device),
                [make() for _ in range(self.num_layers)],
                [make() for _ in range(self.num_layers)],
                torch.ones(1, 1, 1, 1, dtype=torch.bool, device=self.device),
            )
        return self._static[size]

    def _forward(self, static: _Static, blocks: tuple[KVBlock, ...]) -> torch.Tensor:
        """The model over the static inputs: logits ``[1, 1, vocab]``; own KV into the static buffers."""
        size = static.size
        ids = static.inputs[:size].view(1, size)
        positions = static.inputs[size : 2 * size].view(1, size)
        last = static.inputs[2 * size :]
        batch = CascadeBatch([static.cache(blocks)], [size])
        out = self.model(input_ids=ids, position_ids=positions, attention_mask=static.mask, use_cache=False,
                         logits_to_keep=last, ragcache_rows=batch)  # fmt: skip
        return out.logits

    def _capture(self, static: _Static, blocks: tuple[KVBlock, ...]) -> _Graph:
        """Warm up on a side stream (PyTorch's recipe), then capture one forward into the shared pool."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            self._forward(static, blocks)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA work of other threads (a server's) during the capture is neither refused nor captured
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            logits = self._forward(static, blocks)
        self.captures += 1
        return _Graph(graph, tuple(weakref.ref(block) for block in blocks), logits)
