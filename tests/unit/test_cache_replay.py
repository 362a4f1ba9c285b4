"""Cost replay against hand-computed bills (prices chosen so the arithmetic is easy to check)."""

from __future__ import annotations

import pytest

from ragcache.backends.profile import profile_for
from ragcache.cache.replay import CacheRules, ReplayRequest, arrivals, replay, rules_for, rules_from, stable_blocks
from ragcache.errors import ConfigError

# USD per 1M tokens: input 10, read 1 (0.1x), write 12.5 (1.25x); 5-minute TTL; 1,000-token minimum.
RULES = CacheRules(
    "test", "anthropic", input=10.0, cached_read=1.0, cache_write=12.5, ttl_s=300.0, min_cacheable_tokens=1000
)


def req(t: float, *blocks: tuple[str, int], tail: int = 0) -> ReplayRequest:
    return ReplayRequest(t, tuple(blocks), tail)


def test_write_then_read_within_ttl() -> None:
    out = replay([req(0, ("i", 200), ("a", 1800), tail=100), req(60, ("i", 200), ("a", 1800), tail=100)], RULES)
    # first: 2,000 written at 12.5 + 100 tail at 10; second: 2,000 read at 1 + 100 at 10
    assert (out.cache_write_tokens, out.cached_read_tokens, out.uncached_tokens) == (2000, 2000, 200)
    assert out.usd == pytest.approx((2000 * 12.5 + 1000 + 2000 * 1.0 + 1000) / 1e6)
    assert out.no_cache_usd == pytest.approx(4200 * 10 / 1e6)
    assert out.usd_per_1k == pytest.approx(out.usd * 500)
    assert out.prefixes_written == 1


def test_each_hit_refreshes_the_ttl_and_an_idle_prefix_expires() -> None:
    p = (("i", 200), ("a", 1800))
    out = replay([req(0, *p), req(200, *p), req(450, *p), req(751, *p)], RULES)
    # 0 write; 200 hit (expiry 500); 450 hit (expiry 750, alive only thanks to the refresh); 751 expired: write
    assert (out.cache_write_tokens, out.cached_read_tokens) == (4000, 4000)
    assert out.prefixes_written == 2


def test_longest_shared_leading_blocks_are_read_the_rest_written() -> None:
    out = replay(
        [
            req(0, ("i", 200), ("a", 1000)),
            req(1, ("i", 200), ("a", 1000), ("b", 500)),  # reads i+a (1,200), writes b
            req(2, ("i", 200), ("c", 900)),  # shares only i (200 < 1,000 minimum): writes all 1,100
            req(3, ("i", 200), ("a", 1000), ("c", 900)),  # shares i+a with the first two: writes c
        ],
        RULES,
    )
    assert out.cached_read_tokens == 1200 + 1200
    assert out.cache_write_tokens == 1200 + 500 + 1100 + 900


def test_nothing_is_cached_below_the_minimum() -> None:
    out = replay([req(0, ("i", 300), ("a", 600), tail=50), req(1, ("i", 300), ("a", 600), tail=50)], RULES)
    assert (out.cached_read_tokens, out.cache_write_tokens, out.uncached_tokens) == (0, 0, 1900)
    assert out.usd == pytest.approx(out.no_cache_usd) and out.usd == pytest.approx(1900 * 10 / 1e6)


def test_storage_is_billed_per_token_hour_until_the_last_expiry() -> None:
    rules = CacheRules("g", "gemini", 10.0, 1.0, 10.0, ttl_s=3600.0, min_cacheable_tokens=0, storage_per_hour=2.0)
    out = replay([req(0, ("c", 3600)), req(1800, ("c", 3600))], rules)
    # alive from 0 to 1800 + 3600 s = 1.5 h: 5,400 token-hours at $2 per 1M per hour
    assert out.storage_token_hours == pytest.approx(5400.0)
    assert out.storage_usd == pytest.approx(5400 * 2.0 / 1e6)
    assert out.usd == pytest.approx((3600 * 10.0 + 3600 * 1.0) / 1e6 + out.storage_usd)


def test_rules_from_the_price_table() -> None:
    sonnet = rules_for("claude-sonnet-4-5-20250929")
    assert (sonnet.model, sonnet.input, sonnet.cached_read, sonnet.cache_write) == ("claude-sonnet-4-5", 3.0, 0.3, 3.75)
    assert (sonnet.ttl_s, sonnet.min_cacheable_tokens) == (300.0, 1024)
    hour = rules_for("claude-sonnet-4-5", ttl="1h")
    assert (hour.cache_write, hour.ttl_s) == (6.0, 3600.0)
    gpt = rules_for("gpt-5")
    assert (gpt.cache_write, gpt.min_cacheable_tokens) == (gpt.input, 1024)  # OpenAI bills writes as input
    with pytest.raises(ConfigError, match="no vendor table has a row for model 'nope'"):
        rules_for("nope")


def test_models_match_exactly_or_as_a_dated_snapshot_as_pricing_does() -> None:
    assert rules_for("gpt-4o-2024-08-06").model == "gpt-4o"
    for cousin in ("gpt-4o-audio-preview", "claude-sonnet-4-5-beta"):
        with pytest.raises(ConfigError, match="no vendor table"):
            rules_for(cousin)


def test_gemini_bills_storage_with_its_own_ttl_and_minimum() -> None:
    flash = rules_for("gemini-2.5-flash")
    assert (flash.vendor, flash.ttl_s, flash.storage_per_hour, flash.min_cacheable_tokens) == (
        "gemini",
        3600.0,
        1.0,
        2048,
    )
    out = replay([req(0, ("c", 4000)), req(600, ("c", 4000))], flash)
    assert out.storage_token_hours == pytest.approx(4000 * (600 + 3600) / 3600)
    assert out.storage_usd > 0 and out.usd == pytest.approx(
        (4000 * flash.cache_write + 4000 * flash.cached_read) / 1e6 + out.storage_usd
    )


def test_anthropic_looks_back_at_most_twenty_blocks_from_the_breakpoint() -> None:
    rules = rules_for("claude-sonnet-4-5", min_cacheable_tokens=0)
    assert rules.max_lookback_blocks == 20
    head = tuple((f"b{i}", 100) for i in range(5))
    near = head + tuple((f"n{i}", 100) for i in range(20))  # the shared 5 blocks are 20 back: found
    far = head + tuple((f"f{i}", 100) for i in range(21))  # 21 back: not found
    out = replay([ReplayRequest(0, head), ReplayRequest(1, near), ReplayRequest(2, far)], rules)
    assert out.cached_read_tokens == 500
    assert out.cache_write_tokens == 500 + 2000 + 2600


def test_a_self_hosted_engine_is_priced_in_prefill_work_with_no_ttl() -> None:
    rules = rules_for("vllm")

    def prices(r: CacheRules) -> tuple:
        return (r.vendor, r.input, r.cached_read, r.cache_write, r.ttl_s)

    assert prices(rules) == prices(rules_for("vllm:Qwen/Qwen3-8B")) == prices(rules_for_profile("vllm"))
    assert rules_for("vllm:Qwen/Qwen3-8B").model == "Qwen/Qwen3-8B"
    with pytest.raises(ConfigError, match="no cache table for vendor 'acme'"):
        rules_for("acme:m")
    assert (rules.input, rules.cached_read, rules.cache_write, rules.ttl_s) == (1.0, 0.0, 1.0, float("inf"))
    out = replay([req(0, ("c", 1000)), req(10 * 86_400, ("c", 1000))], rules)  # ten days later: still cached
    assert (out.cache_write_tokens, out.cached_read_tokens, out.storage_usd) == (1000, 1000, 0.0)
    assert rules.planning_ttl_s == 86_400.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="arrival order"):
        replay([req(5, ("a", 10)), req(1, ("a", 10))], RULES)
    with pytest.raises(ValueError, match="positive"):
        arrivals(3, 0)
    assert arrivals(3, 30) == [0.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="2 block ids but 1"):
        stable_blocks(["a", "b"], [1])


def rules_for_profile(vendor: str) -> CacheRules:
    return rules_from(profile_for(vendor, "any-model"))
