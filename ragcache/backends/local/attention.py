"""Per-sequence attention inside one batched forward pass: the decode step of continuous batching.

Sequences decoding together have different lengths, and each owns its request
cache (a private copy of its reused prefix, :mod:`.request_cache`). The
model's linear layers run over the whole batch at once (that is where batching
pays: the weights are read once per step for every sequence); attention runs
row by row, each over its own cache, through transformers' own SDPA function,
the very call a sequence decoding alone makes. So there is no padding and no
mask to get wrong, and a row cannot see another row's keys.

:func:`enable_row_attention` registers :func:`row_attention` under
:data:`IMPLEMENTATION` (with SDPA's mask builder) and switches the model to
it. Without the ``ragcache_rows`` keyword (a prefill, a lone forward) it is
exactly SDPA.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

__all__ = ["IMPLEMENTATION", "enable_row_attention", "row_attention"]

IMPLEMENTATION = "ragcache_rows"
_LOCK = threading.Lock()


def row_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    ragcache_rows: Sequence[Any] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA; with ``ragcache_rows`` (one request cache per batch row, one new token each), per-row SDPA.

    Each row's new key and value are appended to its own cache layer first
    (the forward runs without a shared cache), then its query attends to that
    whole layer.
    """
    if ragcache_rows is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = []
    for row, cache in enumerate(ragcache_rows):
        keys, values = cache.layers[module.layer_idx].update(key[row : row + 1], value[row : row + 1])
        output, _ = sdpa_attention_forward(module, query[row : row + 1], keys, values, None, **kwargs)
        outputs.append(output)
    return torch.cat(outputs), None


def enable_row_attention(model: Any) -> bool:
    """Switch an SDPA model to :func:`row_attention`; False (model untouched) for any other attention."""
    with _LOCK:
        current = getattr(model.config, "_attn_implementation", None)
        if current == IMPLEMENTATION:
            return True
        if current != "sdpa":
            return False
        AttentionInterface.register(IMPLEMENTATION, row_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)
        model.set_attn_implementation(IMPLEMENTATION)
        return True
