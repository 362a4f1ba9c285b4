"""Cost of a CacheUsage from the packaged price table, the saving against no cache, and which
model names resolve to a price (exact or a dated snapshot, never a look-alike)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ragcache.backends.base import CacheUsage
from ragcache.cache import pricing
from ragcache.cache.pricing import cost_of, load_prices, price_for, price_usage
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


@pytest.mark.parametrize(
    ("model", "entry"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("gpt-5", "gpt-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("gpt-5-2025-08-07", "gpt-5"),
    ],
)
def test_exact_and_dated_snapshot_names_resolve(model: str, entry: str) -> None:
    price = price_for(model)
    assert price is not None and price.model == entry


@pytest.mark.parametrize(
    "model",
    [
        "claude-opus-4-9",  # a newer model, not claude-opus-4
        "gpt-5.6",  # not gpt-5
        "gpt-5-mini-pro",  # a suffix that is not a date
        "gpt-4o-mini-2024-07",  # half a date
        "claude-sonnet-4-5-2025092",  # seven digits
        "gpt-4o-mini-latest",
        "my-own-model",
        "",
    ],
)
def test_look_alike_and_unknown_names_are_unpriced(model: str) -> None:
    assert price_for(model) is None
    assert cost_of(CacheUsage(input_tokens=100, output_tokens=10), model) is None


def test_openai_cost_and_saving() -> None:
    usage = CacheUsage(input_tokens=2006, cached_tokens=1920, output_tokens=300)
    cost = cost_of(usage, "gpt-5-mini")
    assert cost.usd == pytest.approx((86 * 0.25 + 1920 * 0.025 + 300 * 2.0) / 1e6)
    assert cost.uncached_usd == pytest.approx((2006 * 0.25 + 300 * 2.0) / 1e6)
    assert cost.saved_usd == pytest.approx(1920 * (0.25 - 0.025) / 1e6)
    assert 0 < cost.saved_ratio < 1


def test_anthropic_write_is_dearer_than_no_cache_and_split_by_ttl() -> None:
    write = CacheUsage(input_tokens=10_000, cache_write_tokens=9_990, output_tokens=0)
    assert cost_of(write, "claude-sonnet-4-6").saved_usd < 0  # writing costs 1.25×: a loss until it is read
    split = CacheUsage(input_tokens=10_000, cache_write_tokens=9_990, writes_by_ttl={"1h": 9_990})
    assert cost_of(split, "claude-sonnet-4-6").usd == pytest.approx((10 * 3.0 + 9_990 * 6.0) / 1e6)


def test_gpt_5_6_bills_writes_at_its_ttl() -> None:
    """GPT-5.6 and later bill cache writes: 1.25x for 30 minutes, 2.5x for 12 hours (Responses reports the split)."""
    writes = CacheUsage(input_tokens=10_000, cache_write_tokens=9_000, writes_by_ttl={"30m": 4_000, "12h": 5_000})
    assert cost_of(writes, "gpt-5.6-terra").usd == pytest.approx((1_000 * 2.5 + 4_000 * 3.125 + 5_000 * 6.25) / 1e6)
    plain = CacheUsage(input_tokens=10_000, cache_write_tokens=9_000)  # Chat: no split, the model's default TTL
    assert cost_of(plain, "gpt-5.6-terra").usd == pytest.approx((1_000 * 2.5 + 9_000 * 3.125) / 1e6)
    assert cost_of(plain, "gpt-5.1").usd == pytest.approx(10_000 * 1.25 / 1e6)  # before GPT-5.6: plain input


def test_self_hosted_is_free_and_unknown_models_are_unpriced() -> None:
    usage = CacheUsage(input_tokens=1000, cached_tokens=900, output_tokens=10)
    assert price_usage(BackendConfig(kind="local"), usage) == price_usage(BackendConfig(kind="vllm"), usage)
    assert price_usage(BackendConfig(kind="local"), usage).usd == 0.0
    assert price_usage(BackendConfig(kind="openai", model="mystery"), usage) is None
    configured = price_usage(BackendConfig(kind="openai", model="gpt-4o-mini"), usage, "gpt-5-2025-08-07")
    assert configured == cost_of(usage, "gpt-4o-mini")  # the configured model wins over the reported one
    reported = price_usage(BackendConfig(kind="openai"), usage, "gpt-5-mini-2025-08-07")
    assert reported is not None and reported.model == "gpt-5-mini"


def test_an_unpriced_model_is_logged_once_per_model(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pricing, "_warned", set())  # a fresh process
    usage = CacheUsage(input_tokens=10, output_tokens=1)
    with caplog.at_level(logging.WARNING, logger="ragcache.pricing"):
        for _ in range(3):
            assert price_usage(BackendConfig(kind="anthropic", model="claude-opus-4-9"), usage) is None
            assert price_usage(BackendConfig(kind="openai", model="gpt-5.6"), usage) is None  # not a model id
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "'claude-opus-4-9'" in warnings[0] and "unpriced" in warnings[0]
    assert "'gpt-5.6'" in warnings[1]


def test_a_broken_price_table_names_the_file_and_model(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"m": {"vendor": "x", "as_of": "2026-01-01", "input": 1.0}}}))
    with pytest.raises(ConfigError, match=r"prices.json: model 'm': bad or missing price field"):
        load_prices(path)
