"""The local backend on the real SmolLM2 model: prefix reuse is exact, reported and bounded.

Prompts are kept short where the point is correctness (instructions and the
head of a category block, ~450 tokens); the full small corpus (~3.7k tokens) is
used where the point is the cached share of a realistic prompt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import DynamicCache

from ragcache.app import Answer
from ragcache.backends.base import Generation, GenerationOptions
from ragcache.backends.local import LocalBackend, create
from ragcache.backends.local.kvstore import KVBlock, KVStore
from ragcache.config import BackendConfig, CacheConfig, load_config
from ragcache.corpus.store import load_corpus
from ragcache.errors import ConfigError, ContextLengthError, ModelError, UnsupportedError
from ragcache.prompt import Message, Prompt, Segment, SegmentKind, assemble_prompt

# Float32 logits (magnitudes ~10-30) of a reused prefix vs. one full forward:
# the only difference is the order of floating-point sums in the attention.
LOGIT_ATOL = 2e-3
SHORT = GenerationOptions(max_tokens=6)


def stable(build: Path, block_id: str, chars: int = 1800) -> tuple[Segment, ...]:
    """Instructions and the first ``chars`` characters of a corpus block."""
    corpus = load_corpus(build)
    return (
        Segment(SegmentKind.INSTRUCTIONS, corpus.block_text("instructions"), "instructions"),
        Segment(SegmentKind.CORPUS, corpus.block_text(block_id)[:chars], block_id),
    )


def backend(**cache: Any) -> LocalBackend:
    return create(BackendConfig(), CacheConfig(**cache))


@pytest.fixture(scope="module")
def local(local_model: Path) -> LocalBackend:
    return backend()


def unchanged(block: KVBlock, snapshot: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    pairs = zip(block.layers, snapshot, strict=True)
    return all(torch.equal(k, k0) and torch.equal(v, v0) for (k, v), (k0, v0) in pairs)


def last_logits(local: LocalBackend, ids: list[int], past: Any, start: int) -> torch.Tensor:
    return local._forward(ids[start:], past, start)


def test_the_stable_prefix_ids_are_a_prefix_of_every_prompt(local: LocalBackend, small_build: Path) -> None:
    segments = stable(small_build, "category:overview")
    prefix = local.encoder.encode(assemble_prompt(segments, "")).stable_only().ids
    history = (Message("user", "Is SQLite a server?"), Message("assistant", "No."))
    for prompt in (
        assemble_prompt(segments, "What is zero-configuration?"),
        assemble_prompt(segments, "And ACID?", history=history, context="user: alice"),
    ):
        encoded = local.encoder.encode(prompt)
        assert encoded.ids[: len(prefix)] == prefix
        assert local.tokenizer(encoded.text, add_special_tokens=False)["input_ids"] == encoded.ids
        assert encoded.blocks[0].end == len(prefix) and encoded.blocks[0].stable


@pytest.fixture(scope="module")
def recomputed(local: LocalBackend, small_build: Path) -> tuple[Any, torch.Tensor]:
    """A prompt and the last position's logits from one forward pass over all of it, no cache."""
    encoded = local.encoder.encode(assemble_prompt(stable(small_build, "category:overview"), "Is SQLite a server?"))
    return encoded, last_logits(local, encoded.ids, DynamicCache(config=local.model.config), 0)


@pytest.mark.parametrize("split", ["block", 1, 257, "last"])
def test_logits_with_a_reused_prefix_equal_a_full_recomputation(
    local: LocalBackend, recomputed: tuple[Any, torch.Tensor], split: Any
) -> None:
    encoded, full = recomputed
    ids = encoded.ids
    at = {"block": encoded.blocks[0].end, "last": len(ids) - 1}.get(split, split)
    prefix_cache = DynamicCache(config=local.model.config)
    local._forward(ids[:at], prefix_cache, 0)
    layers = tuple((layer.keys, layer.values) for layer in prefix_cache.layers)
    store = KVStore(1 << 30)
    assert store.put(KVBlock("prefix", None, at, layers)).stored
    stored = store.match(["prefix"]).blocks[0]
    snapshot = [(k.clone(), v.clone()) for k, v in stored.layers]

    reused = last_logits(local, ids, local.past_cache((stored,)), at)
    assert (reused - full).abs().max().item() <= LOGIT_ATOL
    assert int(reused.argmax()) == int(full.argmax())
    assert unchanged(stored, snapshot)


def test_the_stored_prefix_is_unchanged_by_the_requests_that_reuse_it(local: LocalBackend, small_build: Path) -> None:
    segments = stable(small_build, "category:datatypes")
    local.warm(assemble_prompt(segments, ""))
    key = local.encoder.encode(assemble_prompt(segments, "")).blocks[0].key
    block = local.store.match([key]).blocks[0]
    snapshot = [(k.clone(), v.clone()) for k, v in block.layers]
    for question in ("What is a storage class?", "Is there a BOOLEAN type?"):
        generation = local.generate(assemble_prompt(segments, question), SHORT)
        assert generation.usage.cached_tokens == block.tokens
    assert unchanged(block, snapshot)


def test_a_second_question_on_the_same_corpus_is_at_least_90_percent_cached(small_rag: Any) -> None:
    small_rag.ask("What are the storage classes of SQLite?", options=SHORT)
    second = asyncio.run(small_rag.aask("Why should AUTOINCREMENT usually be avoided?", options=SHORT))
    assert second.route.block_ids == ("full",)
    assert second.usage.input_tokens > 3000
    assert second.usage.cached_ratio >= 0.9
    assert second.usage.output_tokens > 0 and second.text
    assert "faq/autoincrement.md" in second.sources and second.model
    items = list(small_rag.stream("Is SQLite a server?", options=SHORT))
    assert isinstance(items[-1], Answer) and "".join(items[:-1]) == items[-1].text
    assert items[-1].usage.cached_ratio >= 0.9 and 0 < items[-1].ttft_s <= items[-1].latency_s
    # the prefill's phases, as docs/bench/gpu breaks a first token down: each reported, none negative
    phases = items[-1].usage.raw["timings_s"]
    assert {"match", "cache", "forward", "store", "device", "first_token"} <= phases.keys()
    assert min(phases.values()) >= 0


def test_after_the_budget_evicted_a_prefix_a_question_reports_zero_cached(small_build: Path) -> None:
    # a ~450-token prefix is ~21 MB of float32 KV: the budget holds one, not two (no files on disk to load it back)
    small = backend(kv_budget_mb=32, persist=False)
    overview, datatypes = stable(small_build, "category:overview"), stable(small_build, "category:datatypes")
    assert small.generate(assemble_prompt(overview, "Is SQLite a server?"), SHORT).usage.cache_write_tokens > 300
    assert small.generate(assemble_prompt(overview, "Does it need setup?"), SHORT).usage.cached_ratio >= 0.9
    small.generate(assemble_prompt(datatypes, "What is a storage class?"), SHORT)
    after = small.generate(assemble_prompt(overview, "Is SQLite a server?"), SHORT)
    assert after.usage.cached_tokens == 0
    assert after.usage.output_tokens > 0 and after.text.strip()
    assert small.store.nbytes <= 32 * 1024 * 1024


def test_turn_n_plus_1_reuses_turn_n_including_earlier_turns(small_rag: Any) -> None:
    session = small_rag.session()
    first = session.ask("Is SQLite a server?", options=SHORT)
    second = session.ask("What does zero-configuration mean?", options=SHORT)
    third = session.ask("Which storage classes exist?", options=SHORT)
    encoder = small_rag.backend.encoder
    history = session.history
    stable_tokens = encoder.encode(small_rag.prompt_for("x")).stable_tokens
    turn2 = encoder.encode(small_rag.prompt_for("What does zero-configuration mean?", history=history[:2]))
    turn3 = encoder.encode(small_rag.prompt_for("Which storage classes exist?", history=history[:4]))
    assert first.usage.cached_tokens >= stable_tokens  # the corpus prefix (warm from other tests, or not)
    assert second.usage.cached_tokens == turn2.blocks[1].end > stable_tokens  # + turn 1's question
    assert third.usage.cached_tokens == turn3.blocks[3].end  # + turn 1's answer and turn 2's question
    assert history[0].content == small_rag.prompt_for("Is SQLite a server?").user_text
    assert history[1] == Message("assistant", first.text)


def test_a_disabled_cache_computes_everything_and_cannot_warm(small_build: Path) -> None:
    off = backend(enabled=False)
    prompt = assemble_prompt(stable(small_build, "category:overview"), "Is SQLite a server?")
    for _ in range(2):
        usage = off.generate(prompt, SHORT).usage
        assert usage.cached_tokens == 0 and usage.cache_write_tokens == 0
    assert not off.capabilities.can_warm
    with pytest.raises(UnsupportedError, match="disabled"):
        off.warm(prompt)


def test_a_persisted_prefix_spares_a_restarted_backend_the_prefill(small_build: Path, tmp_path: Path) -> None:
    prompt = assemble_prompt(stable(small_build, "category:overview"), "Is SQLite a server?")
    warmed = backend(persist_dir=str(tmp_path)).warm(prompt)
    assert warmed.cache_write_tokens > 300 and len(list(tmp_path.glob("*.safetensors"))) == 1
    restarted = backend(persist_dir=str(tmp_path))
    usage = restarted.generate(prompt, SHORT).usage
    assert usage.cached_tokens == warmed.cache_write_tokens


def test_a_torn_persisted_prefix_is_recomputed_with_a_log_line(
    small_build: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prompt = assemble_prompt(stable(small_build, "category:overview"), "Is SQLite a server?")
    warmed = backend(persist_dir=str(tmp_path)).warm(prompt)
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:-4096])  # a write cut short
    with caplog.at_level(logging.WARNING, logger="ragcache.backends.local.persist"):
        usage = backend(persist_dir=str(tmp_path)).generate(prompt, SHORT).usage
    assert usage.cached_tokens == 0 and usage.cache_write_tokens >= warmed.cache_write_tokens
    assert "ignoring" in caplog.text and path.name in caplog.text


def test_prefix_tokens_are_exactly_what_a_warm_up_caches(small_build: Path) -> None:
    fresh = backend()
    prompt = assemble_prompt(stable(small_build, "category:datatypes"), "What is a storage class?")
    caps = fresh.capabilities
    assert caps.exact_prefix_tokens and caps.cache_block_tokens == 1 and caps.can_warm
    warmed = fresh.warm(prompt)
    assert fresh.prefix_tokens(prompt) == warmed.cache_write_tokens == warmed.input_tokens > 300
    assert fresh.warm(prompt).cached_tokens == fresh.prefix_tokens(prompt)


def test_an_answer_raises_no_warning(local: LocalBackend, small_build: Path, caplog: pytest.LogCaptureFixture) -> None:
    prompt = assemble_prompt(stable(small_build, "category:overview"), "Does SQLite need a server process?")
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        local.generate(prompt, SHORT)
        list(local.stream(prompt, SHORT))  # reuses the prefix the first answer stored
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_backend_options_are_validated(local_model: Path, tmp_path: Path) -> None:
    good = create(BackendConfig(options={"device": "cpu", "dtype": "float32", "threads": 1}), CacheConfig())
    assert good.options.device == "cpu" and good.device.type == "cpu"
    config = tmp_path / "typo.yaml"
    config.write_text("backend:\n  kind: local\n  options:\n    devise: cpu\n")
    loaded = load_config(config)
    with pytest.raises(ConfigError) as error:
        create(loaded.backend, loaded.cache)
    assert "backend.options.devise" in str(error.value) and str(config.resolve()) in str(error.value)
    with pytest.raises(ConfigError, match="threads"):
        create(BackendConfig(options={"threads": 0}), CacheConfig())


def test_the_cli_exits_2_on_an_unknown_local_option(small_build: Path, tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("backend:\n  kind: local\n  options:\n    devise: cpu\n")
    cmd = [sys.executable, "-m", "ragcache.cli", "ask", "--config", str(config), "--corpus", str(small_build), "Hi?"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr
    assert "devise" in result.stderr and str(config.resolve()) in result.stderr


def test_streaming_yields_deltas_then_the_generation(local: LocalBackend, small_build: Path) -> None:
    items = list(
        local.stream(
            assemble_prompt(stable(small_build, "category:overview"), "Is SQLite a server?"),
            GenerationOptions(max_tokens=12),
        )
    )
    final = items[-1]
    assert isinstance(final, Generation) and all(isinstance(i, str) for i in items[:-1])
    assert "".join(items[:-1]) == final.text and final.usage.output_tokens <= 12
    assert final.finish_reason in ("stop", "length") and 0 < final.ttft_s <= final.latency_s


def test_sampling_is_reproducible_with_a_seed_and_stop_strings_cut(local: LocalBackend, small_build: Path) -> None:
    prompt = assemble_prompt(stable(small_build, "category:overview"), "Describe SQLite in one sentence.")
    sampled = GenerationOptions(max_tokens=12, temperature=0.9, top_p=0.9, seed=7)
    assert local.generate(prompt, sampled).text == local.generate(prompt, sampled).text
    greedy = local.generate(prompt, GenerationOptions(max_tokens=12)).text
    stop = greedy.strip().split()[1]
    cut = local.generate(prompt, GenerationOptions(max_tokens=12, stop=(stop,)))
    assert stop not in cut.text and greedy.startswith(cut.text) and cut.finish_reason == "stop"


def test_a_prompt_longer_than_the_context_window_is_a_context_length_error(local: LocalBackend) -> None:
    prompt = Prompt(stable=(), question="word " * (local.capabilities.context_window + 10))
    with pytest.raises(ContextLengthError, match="context window"):
        local.generate(prompt, SHORT)
    assert local.count_tokens("hello world") == 2


def test_an_unknown_model_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="unknown model 'no-such-model'"):
        create(BackendConfig(model="no-such-model"), CacheConfig())
