"""Continuous batching on the real SmolLM2 model: a request's answer is the one it gets alone.

Prompts of different lengths (short and long corpus heads, session context,
history) decode together, joining and leaving the batch at different steps;
each greedy answer must equal, token for token, the answer of the same request
run alone on an idle engine with the same prefix KV stored. Requests that wait
together are prefilled together (their own tokens packed into shared forwards):
the same must hold for a warmed prefix, a fully cached prompt and a cold one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ragcache.backends.base import Generation, GenerationOptions
from ragcache.backends.local import LocalBackend, create
from ragcache.config import BackendConfig, CacheConfig
from ragcache.corpus.store import load_corpus
from ragcache.prompt import Message, Prompt, Segment, SegmentKind, assemble_prompt


def stable(build: Path, block_id: str, chars: int) -> tuple[Segment, ...]:
    corpus = load_corpus(build)
    return (
        Segment(SegmentKind.INSTRUCTIONS, corpus.block_text("instructions"), "instructions"),
        Segment(SegmentKind.CORPUS, corpus.block_text(block_id)[:chars], block_id),
    )


@pytest.fixture(scope="module")
def prompts(small_build: Path) -> list[tuple[Prompt, GenerationOptions]]:
    """Six requests: different prefixes and lengths (~150 to ~900 tokens), answers of 4 to 24 tokens."""
    overview, datatypes = stable(small_build, "category:overview", 1800), stable(small_build, "category:datatypes", 400)
    history = (Message("user", "Is SQLite a server?"), Message("assistant", "No, it is a library."))
    return [
        (assemble_prompt(overview, "Is SQLite a server?"), GenerationOptions(max_tokens=24)),
        (assemble_prompt(datatypes, "What is a storage class?"), GenerationOptions(max_tokens=16)),
        (assemble_prompt(overview, "Does it need setup?", context="user: alice"), GenerationOptions(max_tokens=4)),
        (assemble_prompt(overview, "And ACID?", history=history), GenerationOptions(max_tokens=20)),
        (
            assemble_prompt(stable(small_build, "category:overview", 3600), "Who uses it?"),
            GenerationOptions(max_tokens=12),
        ),
        (assemble_prompt(datatypes, "Repeat the word banana."), GenerationOptions(max_tokens=8)),
    ]


@pytest.fixture(scope="module")
def local(local_model: Path) -> LocalBackend:
    backend = create(BackendConfig(options={"max_batch": 8}), CacheConfig(persist=False))  # store.clear() is cold
    yield backend
    backend.close()


def record_steps(local: LocalBackend) -> list[int]:
    """Batch sizes of every decode step from now on (the batcher's step, wrapped)."""
    sizes: list[int] = []
    step: Callable[[list[Any]], Any] = local.batcher.step

    def counted(rows: list[Any]) -> Any:
        sizes.append(len(rows))
        return step(rows)

    local.batcher.step = counted
    return sizes


def test_batched_greedy_answers_equal_the_answers_alone(
    local: LocalBackend, prompts: list[tuple[Prompt, GenerationOptions]]
) -> None:
    for prompt, _ in prompts:  # the same store state for both runs (a reused prefix's logits differ ~1e-3)
        local.generate(prompt, GenerationOptions(max_tokens=1))
    alone = [local.generate(prompt, options) for prompt, options in prompts]
    sizes = record_steps(local)

    def late(index: int) -> Generation:
        time.sleep(0.05 * index)  # later requests join a batch that is already decoding
        return local.generate(*prompts[index])

    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(late, range(len(prompts))))
    assert max(sizes) >= 4, sizes  # they really shared decode steps
    assert len(set(sizes)) > 1  # and the batch changed size as sequences joined and left
    for solo, batched in zip(alone, together, strict=True):
        assert batched.text == solo.text and batched.usage.output_tokens == solo.usage.output_tokens > 0
        assert batched.finish_reason == solo.finish_reason
    assert len({g.text for g in alone}) == len(alone)  # distinct answers: a swap could not go unseen
    assert local.batcher.num_running() == 0 and local.queue_depth() == 0


def test_a_closed_stream_leaves_the_batch_and_the_others_are_unchanged(
    local: LocalBackend, prompts: list[tuple[Prompt, GenerationOptions]]
) -> None:
    prompt, _ = prompts[0]
    long = GenerationOptions(max_tokens=200)
    expected = local.generate(*prompts[1])
    stream = local.stream(prompt, long)
    results: list[Generation] = []
    other = threading.Thread(target=lambda: results.append(local.generate(*prompts[1])))
    next(stream), next(stream)  # two deltas: the long answer is decoding
    other.start()
    stream.close()  # the client went away
    other.join(timeout=120)
    assert results and results[0].text == expected.text
    deadline = time.monotonic() + 10
    while local.batcher.num_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert local.batcher.num_running() == 0


def test_with_max_batch_1_requests_queue_and_the_depth_is_reported(
    local_model: Path, prompts: list[tuple[Prompt, GenerationOptions]]
) -> None:
    serial = create(BackendConfig(options={"max_batch": 1}), CacheConfig())
    try:
        sizes, depths = record_steps(serial), []
        step = serial.batcher.step
        serial.batcher.step = lambda rows: (depths.append(serial.queue_depth()), step(rows))[1]
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda p: serial.generate(*p), prompts[:3]))
        assert set(sizes) == {1} and max(depths) >= 1 and serial.queue_depth() == 0
        assert all(a.usage.output_tokens > 0 for a in answers)
    finally:
        serial.close()


def test_waiting_requests_prefill_together_and_each_answer_equals_the_answer_alone(
    local: LocalBackend, prompts: list[tuple[Prompt, GenerationOptions]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The six queue while the batcher is held, then go through one batched prefill: own parts of ~3 to
    ~900 tokens over the warmed overview prefix (question, context, history), the cached datatypes prompt
    and prefix, and a cold prompt with no stored block, cut across forwards it shares with the others.
    A seventh, identical to the first, waits for the first's blocks instead of computing them again (as
    does the prompt whose history starts with the first's question)."""
    monkeypatch.setattr(local, "prefill_chunk", 256)
    assert local.store is not None

    def fresh() -> None:  # the same store before every run: the overview prefix warmed, prompt 1 stored whole
        local.store.clear()
        local.warm(prompts[0][0])
        local.generate(prompts[1][0], GenerationOptions(max_tokens=1))

    alone = []
    for prompt, options in prompts:
        fresh()
        alone.append(local.generate(prompt, options))
    fresh()
    prefills: list[int] = []  # sequences per prefill
    prefill, step, gate = local.batcher.prefill, local.batcher.step, threading.Event()
    monkeypatch.setattr(local.batcher, "prefill", lambda seqs: (prefills.append(len(seqs)), prefill(seqs))[1])
    monkeypatch.setattr(local.batcher, "step", lambda rows: (gate.wait(120), step(rows))[1])  # held until all queue
    with ThreadPoolExecutor(len(prompts) + 2) as pool:  # the blocker, the six and a twin
        blocker = pool.submit(local.generate, prompts[1][0], GenerationOptions(max_tokens=4))  # stores nothing new
        deadline = time.monotonic() + 60
        while not prefills and time.monotonic() < deadline:
            time.sleep(0.01)
        together = [pool.submit(local.generate, *request) for request in [*prompts, prompts[0]]]
        while local.queue_depth() < len(together) and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        *answers, twin = [future.result(timeout=300) for future in together]
        blocker.result(timeout=60)
    assert prefills == [1, len(prompts) + 1]  # the blocker, then all seven at once
    cached = [answer.usage.cached_tokens for answer in answers]
    assert cached[4] == 0 and all(c > 0 for i, c in enumerate(cached) if i != 4)  # one cold, five over a prefix
    assert answers[4].usage.input_tokens > 2 * local.prefill_chunk  # it spans several forwards
    for solo, batched in zip(alone, answers, strict=True):
        assert batched.text == solo.text and batched.usage.output_tokens == solo.usage.output_tokens > 0
        assert batched.usage.cached_tokens >= solo.usage.cached_tokens
    assert len({g.text for g in alone}) == len(alone)
    assert twin.text == answers[0].text and twin.usage.cached_tokens > answers[0].usage.cached_tokens
    assert answers[3].usage.cached_tokens > alone[3].usage.cached_tokens  # its history's first turn is prompt 0's
