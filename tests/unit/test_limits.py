"""The one table of per-model minimum cacheable tokens, and the backends that read it."""

from __future__ import annotations

import pytest

from ragcache.backends.anthropic.backend import AnthropicBackend
from ragcache.backends.limits import distinct_minimums, min_cacheable_tokens
from ragcache.backends.openai.backend import OpenAIBackend
from ragcache.config import BackendConfig, CacheConfig
from ragcache.errors import ConfigError


@pytest.mark.parametrize(
    ("vendor", "model", "expected"),
    [
        ("anthropic", "claude-opus-4-5-20251101", 4096),  # a dated snapshot of its row, not claude-opus-4
        ("anthropic", "claude-opus-4-1", 1024),
        ("anthropic", "claude-3-5-haiku-latest", 1024),  # not a dated snapshot: the vendor default
        ("anthropic", "claude-unknown-9", 1024),  # no row: the vendor default
        ("gemini", "gemini-2.5-flash", 2048),
        ("gemini", "gemini-3-pro-preview", 4096),
        ("gemini", "gemini-9-ultra", 4096),  # no row: the larger documented figure
        ("openai", "gpt-5-mini", 1024),
        ("openai", "smollm2", 1024),  # any OpenAI-compatible server gets OpenAI's documented minimum
    ],
)
def test_the_table_is_matched_by_exact_name_or_dated_snapshot(vendor: str, model: str, expected: int) -> None:
    assert min_cacheable_tokens(vendor, model) == expected


def test_an_override_wins_and_an_unknown_vendor_is_an_error() -> None:
    assert min_cacheable_tokens("anthropic", "claude-opus-4-5", 100) == 100
    with pytest.raises(
        ConfigError, match="no cache table for vendor 'acme'; known: anthropic, gemini, local, openai, vllm"
    ):
        min_cacheable_tokens("acme", "m")


def test_distinct_minimums_list_each_figure_once() -> None:
    assert distinct_minimums("anthropic") == [512, 1024, 2048, 4096]
    assert distinct_minimums("openai") == [1024]
    assert distinct_minimums("gemini") == [2048, 4096]


def test_backends_take_their_minimum_from_the_table_or_the_option() -> None:
    haiku = AnthropicBackend(BackendConfig(kind="anthropic", model="claude-haiku-4-5"), CacheConfig())
    assert haiku.capabilities.min_cacheable_tokens == 4096
    options = {"min_cacheable_tokens": 2048, "explicit_breakpoints": True}
    config = BackendConfig(kind="openai", model="gpt-5.6-terra", options=options)
    caps = OpenAIBackend(config, CacheConfig()).capabilities
    assert (caps.min_cacheable_tokens, caps.cache_block_tokens, caps.max_breakpoints) == (2048, 128, 4)
    assert OpenAIBackend(BackendConfig(kind="openai"), CacheConfig()).capabilities.max_breakpoints is None
