"""The shared-prefix attention on a tiny random Llama (real transformers model, seeded weights, float32).

Against plain transformers (one forward over the whole sequence, SDPA): a prefix
given as stored blocks read in place, then the request's own tokens, gives the
same logits, in prefill and in batched decode; rows over one prefix and rows
over another (or none) prefill and decode together, packed into one sequence;
the stored blocks are never written.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from ragcache.backends.local.attention import SCORE_BUDGET, CascadeBatch, enable_cascade_attention, uses_flash
from ragcache.backends.local.kvstore import KVBlock
from ragcache.backends.local.request_cache import RequestCache

ATOL = 1e-4  # float32, logits of magnitude ~1: only the order of sums differs


@pytest.fixture(scope="module")
def model() -> Any:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    model.set_attn_implementation("sdpa")
    assert enable_cascade_attention(model)
    return model


def full_logits(model: Any, ids: list[int]) -> torch.Tensor:
    """Every position's logits from one plain forward (the model's attention without rows is SDPA)."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids]), use_cache=True, cache=DynamicCache()).logits[0]


def blocks_of(model: Any, ids: list[int], cuts: list[int], persist: int = 0) -> tuple[KVBlock, ...]:
    """The KV of ``ids`` cut at ``cuts`` into chained blocks, as the store holds them (the first
    ``persist`` marked ``persist``: a stable prefix, which other sessions read too)."""
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=torch.tensor([ids]), use_cache=True, cache=cache)
    blocks, parent = [], None
    for start, end in zip([0, *cuts], [*cuts, len(ids)], strict=True):
        layers = tuple((layer.keys[..., start:end, :].clone(), layer.values[..., start:end, :].clone())
                       for layer in cache.layers)  # fmt: skip
        blocks.append(KVBlock(f"{parent}/{end}", parent, end - start, layers, persist=len(blocks) < persist))
        parent = blocks[-1].key
    return tuple(blocks)


def forward(model: Any, caches: list[RequestCache], ids: list[list[int]], positions: list[int]) -> list[torch.Tensor]:
    """One forward of the rows ``ids`` (any lengths, packed) at ``positions``; each row's logits ``[len, vocab]``."""
    pos = [[p + i for row, p in zip(ids, positions, strict=True) for i in range(len(row))]]
    flat, lengths = [[t for row in ids for t in row]], [len(row) for row in ids]
    batch = CascadeBatch(caches, lengths)
    with torch.inference_mode():
        out = model(input_ids=torch.tensor(flat), position_ids=torch.tensor(pos), use_cache=False, ragcache_rows=batch)
    return list(out.logits[0].split(lengths))


@pytest.mark.parametrize("flash", [True, False])
def test_prefill_over_stored_blocks_equals_one_full_forward(model: Any, flash: bool, monkeypatch: Any) -> None:
    assert uses_flash("cpu", torch.float32, 16)  # the CPU kernel that returns the log-sum-exp is there
    if not flash:  # the float32 formula, used where that kernel is missing or disagrees
        monkeypatch.setattr("ragcache.backends.local.attention._flash_usable", lambda *_: False)
    ids = [(7 * i + 3) % 97 for i in range(90)]
    full = full_logits(model, ids)
    blocks = blocks_of(model, ids[:60], [40])  # a two-block chain: 40 + 20 tokens
    snapshot = [(k.clone(), v.clone()) for block in blocks for k, v in block.layers]
    cache = RequestCache.create(blocks, 2, 64)
    logits = forward(model, [cache], [ids[60:]], [60])[0]
    assert (logits - full[60:]).abs().max().item() <= ATOL
    assert cache.length == 90 and cache.layers[0].length == 30
    after = [(k, v) for block in blocks for k, v in block.layers]
    assert all(torch.equal(k, k0) and torch.equal(v, v0) for (k, v), (k0, v0) in zip(after, snapshot, strict=True))


def test_prefill_in_chunks_and_a_tiny_score_budget_change_nothing(model: Any, monkeypatch: Any) -> None:
    ids = [(5 * i + 1) % 97 for i in range(80)]
    full = full_logits(model, ids)
    cold = RequestCache.create((), 2, 8)  # no prefix: SDPA over own keys, chunk 2 with a causal mask
    first, second = forward(model, [cold], [ids[:50]], [0])[0], forward(model, [cold], [ids[50:]], [50])[0]
    assert (torch.cat([first, second]) - full).abs().max().item() <= ATOL
    monkeypatch.setattr("ragcache.backends.local.attention.SCORE_BUDGET", 64)  # one query per matmul chunk
    monkeypatch.setattr("ragcache.backends.local.attention._flash_usable", lambda *_: False)
    assert SCORE_BUDGET > 64
    cache = RequestCache.create(blocks_of(model, ids[:30], []), 2, 8)
    chunks = [forward(model, [cache], [ids[a:b]], [a])[0] for a, b in ((30, 55), (55, 80))]
    assert (torch.cat(chunks) - full[30:]).abs().max().item() <= ATOL


@pytest.mark.parametrize("padded", [True, False])
def test_batched_decode_over_shared_and_different_prefixes_equals_each_row_alone(
    model: Any, padded: bool, monkeypatch: Any
) -> None:
    if not padded:  # own keys longer than the padding limit: the own parts row by row
        monkeypatch.setattr("ragcache.backends.local.attention.PAD_OWN_TOKENS", 0)
    shared = [(3 * i + 2) % 97 for i in range(50)]
    other = [(11 * i + 5) % 97 for i in range(35)]
    prompts = [[*shared, 1, 2, 3], [*shared, 4, 5, 6, 7, 8], [*other, 9], [*shared[:20], 10, 11]]
    chain = blocks_of(model, shared, [20])  # the store holds each block once: rows share these tensors
    prefixes = [chain, chain, blocks_of(model, other, []), chain[:1]]  # the last: the chain's first block only
    caches = []
    for prompt, blocks in zip(prompts, prefixes, strict=True):
        cache = RequestCache.create(blocks, 2, 4)  # small: decode grows the buffers
        start = cache.start
        forward(model, [cache], [prompt[start:]], [start])
        caches.append(cache)
    assert len(CascadeBatch(caches, [1] * 4).groups) == 3  # two shared blocks and the other prefix
    fed = [[13], [17], [19], [23]]  # each row's decoded tokens, the last one fed next
    for step in range(6):
        batched = [row[-1] for row in forward(model, caches, [[f[-1]] for f in fed], [len(p) + step for p in prompts])]
        for row, prompt in enumerate(prompts):
            alone = full_logits(model, prompt + fed[row])[-1]
            assert (batched[row] - alone).abs().max().item() <= ATOL, (step, row)
        for row, logits in enumerate(batched):
            fed[row].append(int(logits.argmax()))
    assert all(cache.layers[1].length == len(p) - cache.start + 6 for cache, p in zip(caches, prompts, strict=True))


@pytest.mark.parametrize("flash", [True, False])
def test_batched_prefill_of_rows_of_different_lengths_and_prefixes_equals_each_row_alone(
    model: Any, flash: bool, monkeypatch: Any
) -> None:
    if not flash:
        monkeypatch.setattr("ragcache.backends.local.attention._flash_usable", lambda *_: False)
    shared = [(3 * i + 2) % 97 for i in range(50)]
    other = [(11 * i + 5) % 97 for i in range(35)]
    chain = blocks_of(model, shared, [20])
    rows = [  # (prompt, its stored prefix): the whole chain, another prefix, none (cold), part of the chain
        ([*shared, 1, 2, 3], chain),
        ([*other, *range(40, 57)], blocks_of(model, other, [])),
        ([(5 * i + 1) % 97 for i in range(23)], ()),
        ([*shared[:20], 10], chain[:1]),
        ([*shared, *range(60, 90)], chain),
    ]
    caches = [RequestCache.create(blocks, 2, 4) for _, blocks in rows]
    starts = [cache.start for cache in caches]
    logits = forward(model, caches, [p[s:] for (p, _), s in zip(rows, starts, strict=True)], starts)
    assert [len(row) for row in logits] == [3, 17, 23, 1, 30]
    for (prompt, _), start, batched in zip(rows, starts, logits, strict=True):
        assert (batched - full_logits(model, prompt)[start:]).abs().max().item() <= ATOL
    # and decoding on from the batched prefill: every row's next token, together, equals it alone
    nxt = forward(model, caches, [[7]] * len(rows), [len(p) for p, _ in rows])
    for (prompt, _), row in zip(rows, nxt, strict=True):
        assert (row[-1] - full_logits(model, [*prompt, 7])[-1]).abs().max().item() <= ATOL


def test_short_private_blocks_are_copied_into_the_request_and_long_ones_read_in_place(model: Any) -> None:
    """A session's own stored blocks (context, history) join its own keys when short: one attention
    call per layer over the shared prefix instead of one more per private block; the logits stay."""
    ids = [(7 * i + 3) % 97 for i in range(90)]
    full = full_logits(model, ids)
    chain = blocks_of(model, ids[:60], [40, 50], persist=1)  # a stable 40-token prefix, two private blocks
    snapshot = [(k.clone(), v.clone()) for block in chain for k, v in block.layers]
    inlined = RequestCache.create(chain, 2, 8, inline_tokens=20)
    in_place = RequestCache.create(chain, 2, 8, inline_tokens=19)  # 20 private tokens do not fit: all in place
    assert inlined.blocks == chain[:1] and inlined.start == 40 and inlined.layers[0].length == 20
    assert in_place.blocks == chain and in_place.start == 60 and in_place.layers[0].length == 0
    assert RequestCache.create(chain[:1], 2, 8, inline_tokens=64).blocks == chain[:1]  # nothing private
    for cache in (inlined, in_place):
        assert (forward(model, [cache], [ids[60:]], [60])[0] - full[60:]).abs().max().item() <= ATOL
        assert cache.length == 90
    groups = CascadeBatch([inlined, in_place], [1, 1]).groups  # the root for both rows, the rest for one
    assert [g.block for g in groups] == list(chain) and groups[0].tokens is None and groups[1].tokens is not None
    both = forward(model, [inlined, in_place], [[5], [5]], [90, 90])  # a decode step: the same row twice
    alone = full_logits(model, [*ids, 5])[-1]
    assert all((row[-1] - alone).abs().max().item() <= ATOL for row in both)
    own_keys, _ = inlined.own(0, 40, 60)  # the copied blocks answer for their positions like own tokens
    assert torch.equal(own_keys, torch.cat([chain[1].layers[0][0], chain[2].layers[0][0]], -2))
    after = [(k, v) for block in chain for k, v in block.layers]
    assert all(torch.equal(k, k0) and torch.equal(v, v0) for (k, v), (k0, v0) in zip(after, snapshot, strict=True))


def test_a_batch_rejects_a_query_that_is_not_its_packed_row(model: Any) -> None:
    cache = RequestCache.create((), 2, 4)
    with pytest.raises(ValueError, match="packed row of 3 tokens"), torch.inference_mode():
        model(input_ids=torch.tensor([[1, 2]]), use_cache=False, ragcache_rows=CascadeBatch([cache], [3]))
    with pytest.raises(ValueError, match="2 caches but 1 row lengths"):
        CascadeBatch([cache, cache], [1])
