"""The CUDA-graph switch of the local engine, on CPU with the real SmolLM2 model.

CPU has nothing to capture, so the switch resolves to off there (also when a
config asks for it) and answers are the eager ones. The static-buffer forward
a graph replays (padding to a bucket, the kept index, the own KV copied out)
runs eagerly with ``capture=False``: it must give the eager forward's logits
and own KV, and a whole greedy answer must be the same through it. The replay
itself needs a GPU: docs/bench/gpu §4 (``bash scripts/gpu-bench.sh local``).
"""

from __future__ import annotations

import gc
import logging
import weakref
from pathlib import Path

import pytest
import torch

from ragcache.backends.base import GenerationOptions
from ragcache.backends.local import LocalBackend, create
from ragcache.backends.local.graphs import MAX_TOKENS, ForwardGraphs, _Graph, bucket
from ragcache.backends.local.kvstore import KVBlock
from ragcache.config import BackendConfig, CacheConfig
from ragcache.corpus.store import load_corpus
from ragcache.prompt import Message, Segment, SegmentKind, assemble_prompt

LOGIT_ATOL = 2e-3  # float32: the padded forward differs from the eager one only in the order of sums
GREEDY = GenerationOptions(max_tokens=8)


def segments(build: Path) -> tuple[Segment, ...]:
    corpus = load_corpus(build)
    return (
        Segment(SegmentKind.INSTRUCTIONS, corpus.block_text("instructions"), "instructions"),
        Segment(SegmentKind.CORPUS, corpus.block_text("category:overview")[:1200], "category:overview"),
    )


@pytest.fixture(scope="module")
def engine(local_model: Path, small_build: Path) -> LocalBackend:
    backend = create(BackendConfig(options={"device": "cpu", "cuda_graphs": False}), CacheConfig(persist=False))
    backend.warm(assemble_prompt(segments(small_build), ""))
    return backend


def test_the_switch_is_off_on_cpu_even_when_asked_and_says_so(
    local_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ragcache.backends.local.engine"):
        asked = create(BackendConfig(options={"device": "cpu", "cuda_graphs": True}), CacheConfig(persist=False))
    default = create(BackendConfig(options={"device": "cpu"}), CacheConfig(persist=False))
    assert asked.graphs is None and default.graphs is None
    assert "cuda_graphs: true needs a CUDA device" in caplog.text and "'cpu'" in caplog.text


def test_buckets_are_powers_of_two_and_long_own_parts_stay_eager() -> None:
    assert [bucket(n) for n in (1, 16, 17, 23, 100, MAX_TOKENS)] == [16, 16, 32, 32, 128, MAX_TOKENS]
    assert bucket(MAX_TOKENS + 1) is None and bucket(0) is None


def test_a_graph_is_used_only_over_the_very_block_objects_it_was_captured_over() -> None:
    layers = ((torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4)),)
    block = KVBlock("root", None, 2, layers, persist=True)
    graph = _Graph(None, (weakref.ref(block),), torch.zeros(1))
    assert graph.reads((block,))
    restored = KVBlock("root", None, 2, tuple((k.clone(), v.clone()) for k, v in layers), persist=True)
    assert not graph.reads((restored,))  # same key, other tensors (evicted and stored again)
    assert not graph.reads((block, restored)) and not graph.reads(())
    del block
    gc.collect()
    assert not graph.reads((restored,))  # the captured block is gone: never replayed again


def test_the_static_forward_gives_the_eager_logits_and_own_kv(engine: LocalBackend, small_build: Path) -> None:
    graphs = ForwardGraphs.for_model(engine.model, engine._num_layers, engine.device, capture=False)
    encoded = engine.encoder.encode(assemble_prompt(segments(small_build), "Is SQLite a server?"))
    match = engine.store.match(encoded.block_keys[:1])
    start, own = match.tokens, encoded.ids[match.tokens :]
    eager_cache, static_cache = engine.past_cache(match.blocks, 8), engine.past_cache(match.blocks, 8)
    assert graphs.can_run(static_cache, len(own)) and bucket(len(own)) > len(own)  # padded
    with torch.inference_mode():
        eager = engine._model_rows([eager_cache], [own], [start])[0]
        static = graphs.run(static_cache, own, lambda: pytest.fail("no capture on CPU"))
    assert (static - eager).abs().max().item() <= LOGIT_ATOL and int(static.argmax()) == int(eager.argmax())
    assert static_cache.length == eager_cache.length == len(encoded.ids)
    end = len(encoded.ids)
    for layer in range(engine._num_layers):
        for got, want in zip(static_cache.own(layer, start, end), eager_cache.own(layer, start, end), strict=True):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not graphs.can_run(static_cache, 1)  # own tokens already there: a decode step stays eager


def test_a_greedy_answer_through_the_static_forward_is_the_eager_answer(
    engine: LocalBackend, small_build: Path
) -> None:
    prompt = assemble_prompt(segments(small_build), "What does zero-configuration mean?")
    eager = engine.generate(prompt, GREEDY)
    engine.store.clear()  # the question's block was stored: the second answer must start from the prefix alone
    engine.warm(assemble_prompt(segments(small_build), ""))
    engine.graphs = graphs = ForwardGraphs.for_model(engine.model, engine._num_layers, engine.device, capture=False)
    try:
        static = engine.generate(prompt, GREEDY)
    finally:
        engine.graphs = None
    assert graphs.runs == 1  # the first forward; the decode steps stay eager
    assert static.usage.cached_tokens == eager.usage.cached_tokens > 0 and static.usage.cache_write_tokens > 0
    assert static.text == eager.text and static.usage.output_tokens == eager.usage.output_tokens > 0


def test_only_a_prefix_of_stable_blocks_and_a_short_own_part_take_the_graph(
    engine: LocalBackend, small_build: Path
) -> None:
    graphs = ForwardGraphs.for_model(engine.model, engine._num_layers, engine.device, capture=False)
    history = (Message("user", "Is SQLite a server?"), Message("assistant", "No."))
    first = engine.generate(assemble_prompt(segments(small_build), "Is SQLite a server?"), GREEDY)
    assert first.usage.cached_tokens > 0
    turn = engine.encoder.encode(assemble_prompt(segments(small_build), "And ACID?", history=history))
    match = engine.store.match(turn.block_keys)
    assert len(match.blocks) >= 2 and not match.blocks[-1].persist  # the history block of the first turn
    assert not graphs.can_run(engine.past_cache(match.blocks, 8), 8)
    stable_only = engine.past_cache(match.blocks[:1], 8)
    assert graphs.can_run(stable_only, 8) and not graphs.can_run(stable_only, MAX_TOKENS + 1)
    assert not graphs.can_run(engine.past_cache((), 8), 8)  # a cold prefill


def test_a_capture_that_fails_falls_back_to_the_eager_forward_once_and_for_all(
    engine: LocalBackend, small_build: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graphs = ForwardGraphs.for_model(engine.model, engine._num_layers, engine.device)  # capture asked on CPU
    encoded = engine.encoder.encode(assemble_prompt(segments(small_build), "Is SQLite fast?"))
    match = engine.store.match(encoded.block_keys[:1])
    own, cache = encoded.ids[match.tokens :], engine.past_cache(match.blocks, 8)
    with torch.inference_mode():
        eager = engine._model_rows([engine.past_cache(match.blocks, 8)], [own], [match.tokens])[0]
        with caplog.at_level(logging.WARNING, logger="ragcache.backends.local.graphs"):
            got = graphs.run(cache, own, lambda: engine._model_rows([cache], [own], [match.tokens])[0])
    assert torch.equal(got, eager) and cache.length == len(encoded.ids)
    assert graphs.failed and "CUDA graph capture failed" in caplog.text and graphs.captures == graphs.runs == 0
    assert not graphs.can_run(engine.past_cache(match.blocks, 8), len(own))  # eager from now on
