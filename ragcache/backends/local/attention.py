"""Shared-prefix ("cascade") attention: stored prefix blocks read in place, merged by log-sum-exp.

A request's KV is the chain of stored blocks it matched (read-only, shared by
every request over that prefix) followed by its own tokens
(:class:`~ragcache.backends.local.request_cache.RequestCache`). Softmax
attention over keys cut into parts equals the parts' attentions weighted by
their log-sum-exp of scores (the split-softmax merge of FlashAttention and
cascade inference): ``out = sum_i exp(lse_i - lse) * out_i`` with
``lse = logsumexp_i lse_i``. So, per layer of one forward pass:

- **a stored block**: no mask (every prefix key precedes every query); the
  queries of *all* rows that hold the block go through one matmul against its
  keys, so a decode step reads the shared corpus prefix once, not once per row;
- **the row's own tokens**: causal (a query sees own keys up to its own position);
  in a decode step whose rows all read stored blocks, every row's at once, the
  own keys padded to the longest row (up to :data:`PAD_OWN_TOKENS`);
- the parts are merged block by block, root first, then the own part: the same
  code for a request alone (a batch of one row) and batched, so the only
  difference batching makes is the shape of the matmuls (as in the linear layers).

The rows of a forward pass are **packed** into one sequence of tokens (row i
owns a contiguous span of it, :class:`CascadeBatch`): a decode step is rows of
one token, a batched prefill rows of their own lengths, with no padding. The
linear layers see every token at once; attention keeps each row to its own
prefix and its own tokens.

A row without a stored prefix (a cold prefill, the cache off) is transformers'
own SDPA call over its own keys. A stored block goes through PyTorch's
FlashAttention kernel, which returns the log-sum-exp (CUDA in bf16/fp16, and
the CPU's; checked once against the float32 formula); otherwise, and for the
own part, the formula runs in float32, in query chunks bounded by
:data:`SCORE_BUDGET`.

:func:`enable_cascade_attention` registers :func:`cascade_attention` under
:data:`IMPLEMENTATION` (with SDPA's mask builder). Without the ``ragcache_rows``
keyword (a plain forward with a transformers cache) it is exactly SDPA.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from ragcache.backends.local.kvstore import KVBlock
from ragcache.backends.local.request_cache import RequestCache

__all__ = ["IMPLEMENTATION", "PAD_OWN_TOKENS", "SCORE_BUDGET", "CascadeBatch", "cascade_attention",
           "enable_cascade_attention", "uses_flash"]  # fmt: skip

log = logging.getLogger(__name__)

IMPLEMENTATION = "ragcache_cascade"
SCORE_BUDGET = 1 << 26  # float32 scores per matmul (256 MiB): bounds a long prefill over a stored prefix
PAD_OWN_TOKENS = 512  # a decode step pads the rows' own keys into one tensor up to this length (a copy per step)
_LOCK = threading.Lock()


class CascadeBatch:
    """The rows of one forward pass, packed: row i is ``lengths[i]`` consecutive tokens over ``caches[i]``.

    The stored blocks the rows read are grouped once, root first; a group's
    ``tokens`` index its rows' tokens in the packed sequence (None: every token).
    """

    def __init__(self, caches: Sequence[RequestCache], lengths: Sequence[int]) -> None:
        if len(caches) != len(lengths):
            raise ValueError(f"{len(caches)} caches but {len(lengths)} row lengths")
        self.caches = list(caches)
        ends = list(itertools.accumulate(lengths))
        self.spans = list(zip([0, *ends[:-1]], ends, strict=True))
        self.total = ends[-1] if ends else 0
        # a decode step over stored prefixes: one token per row, every row reads blocks (the own parts batch)
        self.is_decode = self.total == len(self.caches) and all(cache.blocks for cache in self.caches)
        found: dict[str, tuple[int, KVBlock, list[int]]] = {}
        for row, cache in enumerate(self.caches):
            for depth, block in enumerate(cache.blocks):
                found.setdefault(block.key, (depth, block, []))[2].append(row)
        # by depth (a key's depth is fixed by its chain hash): each row merges its blocks root first
        self.groups = [
            _Group(depth, block, self._tokens(members, block))
            for depth, block, members in sorted(found.values(), key=lambda entry: entry[0])
        ]

    def rows(self) -> Iterator[tuple[RequestCache, tuple[int, int]]]:
        """Each row's request cache and its span ``(start, end)`` of the packed tokens."""
        return zip(self.caches, self.spans, strict=True)

    def _tokens(self, rows: list[int], block: KVBlock) -> torch.Tensor | None:
        if len(rows) == len(self.caches):
            return None
        index = [t for row in rows for t in range(*self.spans[row])]
        return torch.tensor(index, dtype=torch.long, device=block.layers[0][0].device)


@dataclass(frozen=True)
class _Group:
    """A stored block and the packed positions of the queries that read it (None: all of them)."""

    depth: int
    block: KVBlock
    tokens: torch.Tensor | None


def cascade_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    ragcache_rows: CascadeBatch | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA; with ``ragcache_rows``, the shared-prefix attention of the module docstring.

    ``query`` is ``[1, heads, total, dim]``, ``key``/``value`` ``[1, kv_heads,
    total, dim]``: the rows' new tokens, packed. Each row's keys and values go
    into its own cache first (the forward runs without a transformers cache).
    Returns ``[1, total, heads, dim]``.
    """
    if ragcache_rows is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    for name in ("softcap", "sliding_window", "s_aux"):
        if kwargs.get(name) is not None:
            raise ValueError(f"the shared-prefix attention serves plain softmax attention, not {name}")
    batch, layer = ragcache_rows, module.layer_idx
    _, heads, total, dim = query.shape
    if query.shape[0] != 1 or total != batch.total:
        raise ValueError(f"expected one packed row of {batch.total} tokens, got query {tuple(query.shape)}")
    scale = kwargs.get("scaling") or dim**-0.5
    kv_heads = key.shape[1]
    grouped = query[0].reshape(kv_heads, heads // kv_heads, total, dim)  # kv head i serves query heads i*g…
    own = [cache.layers[layer].append(key[..., a:b, :], value[..., a:b, :]) for cache, (a, b) in batch.rows()]
    lse, out = _prefix_parts(batch, layer, grouped, scale)
    # On CUDA each row's own part stays on flash (docs/bench/gpu §4a measured that path); padding helped on CPU.
    padded = batch.is_decode and not query.is_cuda and max(k.shape[-2] for k, _ in own) <= PAD_OWN_TOKENS
    if padded and lse is not None and out is not None:
        merged = _own_decode(grouped, own, scale, lse, out)  # every row's own part in one matmul each way
        return merged.to(query.dtype).reshape(1, total, heads, dim), None
    outputs = []
    for (cache, (a, b)), (keys, values) in zip(batch.rows(), own, strict=True):
        n = b - a
        if not cache.blocks:
            mask = _causal_mask(n, keys.shape[-2], keys.device)
            outputs.append(sdpa_attention_forward(module, query[..., a:b, :], keys, values, mask, scaling=scale)[0])
            continue
        assert lse is not None and out is not None
        queries = grouped[:, :, a:b].reshape(kv_heads, -1, dim)
        own_out, own_lse = _attend(queries, keys[0], values[0], scale, causal_n=n)
        share = torch.sigmoid(own_lse - lse[:, :, a:b].reshape(kv_heads, -1)).unsqueeze(-1)
        merged = torch.lerp(out[:, :, a:b].reshape(kv_heads, -1, dim), own_out, share)  # the last merge
        outputs.append(merged.to(query.dtype).reshape(1, heads, n, dim).transpose(1, 2))
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)), None


def enable_cascade_attention(model: Any) -> bool:
    """Switch an SDPA model to :func:`cascade_attention`; False (model untouched) for any other attention."""
    with _LOCK:
        current = getattr(model.config, "_attn_implementation", None)
        if current == IMPLEMENTATION:
            return True
        if current != "sdpa":
            return False
        AttentionInterface.register(IMPLEMENTATION, cascade_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)
        model.set_attn_implementation(IMPLEMENTATION)
        return True


def uses_flash(device: torch.device | str, dtype: torch.dtype, head_dim: int) -> bool:
    """Whether stored blocks go through FlashAttention's kernel on this device and dtype (else float32 math)."""
    return _flash_usable(str(torch.device(device)), dtype, head_dim)


# --- the parts and their merge ------------------------------------------------------


def _prefix_parts(
    batch: CascadeBatch, layer: int, grouped: torch.Tensor, scale: float
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Each token's attention over its row's stored blocks, merged root first: lse ``[kv, g, total]``, out ``[.., d]``.

    ``grouped`` is the packed queries ``[kv, g, total, d]``. None when no row has
    a stored block; the tokens of a row without one are left unset.
    """
    kv_heads, group, total, dim = grouped.shape
    lse: torch.Tensor | None = None
    out: torch.Tensor | None = None
    for part in batch.groups:
        keys, values = part.block.layers[layer]
        picked = grouped if part.tokens is None else grouped[:, :, part.tokens]
        count = picked.shape[2]
        part_out, part_lse = _attend(picked.reshape(kv_heads, group * count, dim), keys[0], values[0], scale)
        part_out, part_lse = part_out.view(kv_heads, group, count, dim), part_lse.view(kv_heads, group, count)
        if part.tokens is None:  # every row holds the block: no gather, no scatter
            lse, out = (part_lse, part_out) if part.depth == 0 else _merge(lse, out, part_lse, part_out)
            continue
        if lse is None or out is None:
            lse = grouped.new_full((kv_heads, group, total), float("-inf"), dtype=torch.float32)
            out = grouped.new_zeros((kv_heads, group, total, dim), dtype=torch.float32)
        index = part.tokens
        if part.depth == 0:
            lse[:, :, index], out[:, :, index] = part_lse, part_out
        else:
            lse[:, :, index], out[:, :, index] = _merge(lse[:, :, index], out[:, :, index], part_lse, part_out)
    return lse, out


def _own_decode(
    grouped: torch.Tensor,
    own: list[tuple[torch.Tensor, torch.Tensor]],
    scale: float,
    lse: torch.Tensor,
    out: torch.Tensor,
) -> torch.Tensor:
    """A decode step's own part for every row at once, merged into the prefix parts: ``[rows, kv, g, d]``.

    Row r's one query (``grouped[:, :, r]``) over its own keys ``own[r]``; the
    keys are padded to the longest row (padding masked out), so the step is a
    few batched matmuls instead of a dozen small calls per row and layer.
    """
    keys = pad_sequence([k[0].transpose(0, 1) for k, _ in own], batch_first=True)  # [rows, s, kv, d]
    values = pad_sequence([v[0].transpose(0, 1) for _, v in own], batch_first=True)
    lengths = torch.tensor([k.shape[-2] for k, _ in own], device=keys.device)
    queries = grouped.permute(2, 0, 1, 3)  # [rows, kv, g, d]
    scores = torch.matmul(queries.to(keys.dtype), keys.permute(0, 2, 3, 1)).float().mul_(scale)
    padding = torch.arange(keys.shape[1], device=keys.device) >= lengths[:, None]
    scores.masked_fill_(padding[:, None, None], float("-inf"))
    top = scores.amax(-1, keepdim=True)
    weights = scores.sub_(top).exp_()
    total = weights.sum(-1, keepdim=True)
    own_out = torch.matmul(weights.to(values.dtype), values.transpose(1, 2)).float().div_(total)
    share = torch.sigmoid((top + total.log()).squeeze(-1) - lse.permute(2, 0, 1)).unsqueeze(-1)
    return torch.lerp(out.permute(2, 0, 1, 3), own_out, share)


def _causal_mask(n: int, total: int, device: torch.device) -> torch.Tensor | None:
    """SDPA's mask for ``n`` new queries over ``total`` own keys (None where SDPA's own ``is_causal`` is right)."""
    if n == 1 or n == total:
        return None
    return torch.ones(n, total, dtype=torch.bool, device=device).tril(total - n)[None, None]


def _merge(
    lse_a: torch.Tensor | None, out_a: torch.Tensor | None, lse_b: torch.Tensor, out_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two parts' attention as one: B's share of the softmax mass is ``sigmoid(lse_b - lse_a)``."""
    assert lse_a is not None and out_a is not None
    share = torch.sigmoid(lse_b - lse_a).unsqueeze(-1)
    return torch.logaddexp(lse_a, lse_b), torch.lerp(out_a, out_b, share)


def _attend(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float, *, causal_n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``queries`` ``[kv, m, d]`` over ``keys``/``values`` ``[kv, s, d]``: out and lse in float32.

    ``causal_n=None``: no mask (a stored block). ``causal_n=n``: the queries are
    ``m / n`` groups of the row's last ``n`` own positions, each seeing own keys
    up to its position (the own part, upcast to float32: it is short).
    """
    kv_heads, m, dim = queries.shape
    if causal_n is None:
        if _flash_usable(str(queries.device), queries.dtype, dim):
            return _flash(queries, keys, values, scale)
        out, lse = _chunks(queries.view(kv_heads, 1, m, dim), keys, values, scale, causal=False)
    elif queries.is_cuda and causal_n in (1, keys.shape[-2]) and _flash_usable(str(queries.device), queries.dtype, dim):
        return _flash_own(queries, keys, values, scale, causal_n)
    else:
        grouped = queries.view(kv_heads, m // causal_n, causal_n, dim)
        out, lse = _chunks(grouped, keys.float(), values.float(), scale, causal=True)
    return out.reshape(kv_heads, m, dim), lse.reshape(kv_heads, m)


def _flash_own(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The own part on CUDA in one FlashAttention call: a first forward (``n`` queries over their own
    ``n`` keys, causal) or a decode step (one query, no mask) — the two cases where the kernel's
    top-left causal alignment is right. The keys are repeated per query head (they are few); a
    handful of kernel launches instead of the float32 formula's dozen, which is what a short GPU
    forward is bound by."""
    kv_heads, m, dim = queries.shape
    groups = m // n
    q = queries.reshape(kv_heads * groups, n, dim)[None]
    k = keys.repeat_interleave(groups, 0)[None]
    v = values.repeat_interleave(groups, 0)[None]
    result = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, n > 1, False, scale=scale)
    return result[0][0].float().reshape(kv_heads, m, dim), result[1][0].reshape(kv_heads, m)


def _chunks(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float, *, causal: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_softmax` over chunks of the ``n`` positions of ``queries`` ``[kv, g, n, d]``, each within the budget."""
    kv_heads, groups, n, _ = queries.shape
    total = keys.shape[-2]
    step = max(1, SCORE_BUDGET // (kv_heads * groups * total))
    parts = []
    for first in range(0, n, step):
        count = min(step, n - first)
        mask = None
        if causal and n > 1:  # position first+i sees own keys up to total-n+first+i
            mask = torch.ones(count, total, dtype=torch.bool, device=keys.device).tril(total - n + first)
        parts.append(_softmax(queries[:, :, first : first + count], keys, values, scale, mask))
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p[0] for p in parts], 2), torch.cat([p[1] for p in parts], 2)


def _softmax(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``queries`` ``[kv, g, c, d]`` over ``keys``/``values`` ``[kv, s, d]`` (``mask`` ``[c, s]``, True: seen).

    One matmul per kv head for all ``g * c`` queries (no broadcast copy of the
    keys); scores and softmax in float32 (in bf16 the score matmul itself rounds
    to bf16, as transformers' eager attention does).
    """
    kv_heads, groups, count, dim = queries.shape
    flat = queries.to(keys.dtype).reshape(kv_heads, groups * count, dim)
    scores = torch.bmm(flat, keys.transpose(1, 2)).float().mul_(scale).view(kv_heads, groups, count, -1)
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    top = scores.amax(-1, keepdim=True)
    weights = scores.sub_(top).exp_()
    total = weights.sum(-1, keepdim=True)
    out = torch.bmm(weights.view(kv_heads, groups * count, -1).to(values.dtype), values)
    out = out.float().view(kv_heads, groups, count, dim).div_(total)
    return out, (top + total.log()).squeeze(-1)


def _flash(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's FlashAttention kernel (CUDA: bf16/fp16; CPU: its own): out and its log-sum-exp, no mask."""
    q, k, v = queries[None], keys[None], values[None]
    if queries.is_cuda:
        result = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scale)
    else:
        result = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, scale=scale)
    return result[0][0].float(), result[1][0].float()


@functools.lru_cache(maxsize=16)
def _flash_usable(device: str, dtype: torch.dtype, head_dim: int) -> bool:
    """Whether :func:`_flash` runs here and agrees with the float32 formula (checked once on random data)."""
    if device.startswith("cuda") and dtype not in (torch.bfloat16, torch.float16):
        return False
    if not device.startswith(("cuda", "cpu")):
        return False
    try:
        generator = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn(2, m, head_dim, device=device, generator=generator).to(dtype) for m in (24, 77, 77))
        scale = head_dim**-0.5
        out, lse = _flash(q, k, v, scale)
        ref_out, ref_lse = _chunks(q.float()[:, None], k.float(), v.float(), scale, causal=False)
        error = max((out - ref_out[:, 0]).abs().max().item(), (lse - ref_lse[:, 0]).abs().max().item())
    except Exception as exc:  # a torch without the private kernel, an unsupported head size: the formula then
        log.warning("FlashAttention with log-sum-exp unavailable on %s (%s); using float32 math", device, exc)
        return False
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    if error > tolerance:
        log.warning("FlashAttention's log-sum-exp disagrees with float32 math by %.3g on %s; not used", error, device)
    return error <= tolerance
