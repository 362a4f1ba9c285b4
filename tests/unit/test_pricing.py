"""Cost of a CacheUsage from the packaged price table, and the saving against no cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragcache.backends.base import CacheUsage
from ragcache.cache.pricing import cost_of, estimate_cost, load_prices, price_for
from ragcache.config import BackendConfig
from ragcache.errors import ConfigError


def test_every_packaged_price_has_a_date_and_sane_ratios() -> None:
    prices = load_prices()
    assert len(prices) >= 20
    for price in prices.values():
        assert price.as_of[:2] == "20" and len(price.as_of) == 10
        assert 0 < price.cached_read < price.input < price.output
        assert price.cache_write_1h >= price.cache_write_5m >= price.input
    sonnet = prices["claude-sonnet-4-6"]
    assert (sonnet.input, sonnet.cached_read, sonnet.cache_write_5m, sonnet.cache_write_1h) == (3.0, 0.3, 3.75, 6.0)


def test_longest_prefix_matches_dated_model_names() -> None:
    assert price_for("gpt-5-mini-2025-08-07").model == "gpt-5-mini"
    assert price_for("gpt-5-2025-08-07").model == "gpt-5"
    assert price_for("claude-haiku-4-5-20251001").model == "claude-haiku-4-5"
    assert price_for("my-own-model") is None


def test_openai_cost_and_saving() -> None:
    usage = CacheUsage(input_tokens=2006, cached_tokens=1920, output_tokens=300)
    cost = cost_of(usage, "gpt-5-mini")
    assert cost.usd == pytest.approx((86 * 0.25 + 1920 * 0.025 + 300 * 2.0) / 1e6)
    assert cost.no_cache_usd == pytest.approx((2006 * 0.25 + 300 * 2.0) / 1e6)
    assert cost.saving_usd == pytest.approx(1920 * (0.25 - 0.025) / 1e6)
    assert 0 < cost.saving_ratio < 1


def test_anthropic_write_is_dearer_than_no_cache_and_split_by_ttl() -> None:
    write = CacheUsage(input_tokens=10_000, cache_write_tokens=9_990, output_tokens=0)
    assert cost_of(write, "claude-sonnet-4-6").saving_usd < 0  # writing costs 1.25×: a loss until it is read
    split = CacheUsage(
        input_tokens=10_000,
        cache_write_tokens=9_990,
        raw={"cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 9_990}},
    )
    assert cost_of(split, "claude-sonnet-4-6").usd == pytest.approx((10 * 3.0 + 9_990 * 6.0) / 1e6)


def test_self_hosted_is_free_and_unknown_models_are_unpriced() -> None:
    usage = CacheUsage(input_tokens=1000, cached_tokens=900, output_tokens=10)
    assert cost_of(usage, "smollm2", "vllm").usd == 0.0
    assert cost_of(usage, "smollm2", "local").priced
    assert not cost_of(usage, "mystery-model", "openai").priced
    assert estimate_cost(BackendConfig(kind="local"), usage) == 0.0
    assert estimate_cost(BackendConfig(kind="openai", model="mystery"), usage) is None
    assert estimate_cost(BackendConfig(kind="openai"), usage) > 0  # default model gpt-5-mini


def test_a_broken_price_table_names_the_file_and_model(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"m": {"vendor": "x", "as_of": "2026-01-01", "input": 1.0}}}))
    with pytest.raises(ConfigError, match=r"prices.json: model 'm': bad or missing price field"):
        load_prices(path)
