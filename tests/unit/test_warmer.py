"""Warm-up verification and the keep-warm rule, on a simulated clock.

The backend here is scripted (it reports the cache usage a test dictates), like
httpx's MockTransport: this file tests the warmer's own logic. The warmer
against a real vLLM server is in tests/integration/test_vllm_backends.py.
"""

from __future__ import annotations

from ragcache.backends.base import Backend, CacheUsage, Capabilities, Generation, GenerationOptions
from ragcache.cache.warmer import KeepWarmPolicy, Warmer, expected_cached_tokens, policy_for
from ragcache.errors import BackendUnavailableError
from ragcache.prompt import Prompt, Segment, SegmentKind

TTL = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedBackend(Backend):
    """Every warm() is recorded; a repeat reports ``cached_on_repeat`` cached tokens."""

    name = "scripted"

    def __init__(
        self,
        clock: Clock,
        tokens: int = 2000,
        cached_on_repeat: int | None = None,
        block: int = 128,
        *,
        exact: bool = True,
        can_warm: bool = True,
        reads_refresh_ttl: bool = True,
    ) -> None:
        self.clock, self.tokens, self.block, self.exact, self.can_warm = clock, tokens, block, exact, can_warm
        self.reads_refresh_ttl = reads_refresh_ttl
        self.cached_on_repeat = tokens // block * block if cached_on_repeat is None else cached_on_repeat
        self.warm_calls: list[float] = []
        self.fail = False

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            context_window=8192,
            min_cacheable_tokens=1024,
            cache_block_tokens=self.block,
            exact_prefix_tokens=self.exact,
            ttl_s=TTL,
            can_warm=self.can_warm,
            reads_refresh_ttl=self.reads_refresh_ttl,
        )

    def prefix_tokens(self, prompt: Prompt) -> int:
        if not self.exact:
            raise AssertionError("the warmer must not ask for exact counts the backend does not declare")
        return self.tokens

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        raise AssertionError("the warmer only warms")

    def warm(self, prompt: Prompt) -> CacheUsage:
        if self.fail:
            raise BackendUnavailableError("down")
        first = not self.warm_calls
        self.warm_calls.append(self.clock())
        return CacheUsage(input_tokens=self.tokens + 10, cached_tokens=0 if first else self.cached_on_repeat)


def prompt(tag: str = "a") -> Prompt:
    return Prompt(stable=(Segment(SegmentKind.CORPUS, f"corpus {tag}", f"category:{tag}"),), question="")


def test_expected_cached_tokens_are_the_whole_blocks_above_the_minimum() -> None:
    assert expected_cached_tokens(2000, 1024, 128) == 1920
    assert expected_cached_tokens(1000, 1024, 128) == 0
    assert expected_cached_tokens(1500, 1024, 1) == 1500


def test_warm_up_verifies_with_a_repeat_and_flags_what_did_not_cache() -> None:
    clock = Clock()
    ok = Warmer(ScriptedBackend(clock), clock=clock).warm([prompt("a"), prompt("a")])
    assert [r.status for r in ok] == ["cached"]  # one prefix, warmed once
    assert ok[0].expected_cached == 1920 and not ok[0].flagged
    bad = Warmer(ScriptedBackend(clock, cached_on_repeat=1024), clock=clock).warm([prompt("b")])
    assert bad[0].status == "not-cached" and bad[0].flagged
    assert "expected ≥ 1920" in bad[0].detail
    small = Warmer(ScriptedBackend(clock, tokens=600), clock=clock).warm([prompt("c")])
    assert small[0].status == "below-minimum" and not small[0].flagged
    down = ScriptedBackend(clock)
    down.fail = True
    assert Warmer(down, clock=clock).warm([prompt("d")])[0].status == "error"


def test_warm_up_plans_with_the_declared_capabilities() -> None:
    clock = Clock()
    [exact] = Warmer(ScriptedBackend(clock, block=256), clock=clock).warm([prompt("e")])
    assert (exact.prefix_tokens, exact.expected_cached) == (2000, 1792)  # the backend's count, its 256-token blocks
    estimating = ScriptedBackend(clock, cached_on_repeat=1920, exact=False)
    [estimated] = Warmer(estimating, clock=clock).warm([prompt("f")])
    assert estimated.prefix_tokens == 2010 - 16  # warm-up input less the slack for its one-word turn
    assert estimated.expected_cached == 1920 and estimated.status == "cached"
    no_cache = ScriptedBackend(clock, can_warm=False)
    [skipped] = Warmer(no_cache, clock=clock).warm([prompt("g")])
    assert skipped.status == "unsupported" and no_cache.warm_calls == []


def simulate(warmer: Warmer, backend: ScriptedBackend, requests: list[float], until: float) -> list[float]:
    """Advance 5 s at a time, recording requests and ticking; return refresh times."""
    p = prompt()
    warmer.warm([p], verify=False)
    backend.warm_calls.clear()
    pending = sorted(requests)
    clock = warmer.clock
    while clock.now <= until:
        while pending and pending[0] <= clock.now:
            warmer.record(p)
            pending.pop(0)
        warmer.tick()
        clock.now += 5.0
    return list(backend.warm_calls)


def test_refreshes_come_before_expiry_while_traffic_is_steady_and_stop_with_it() -> None:
    clock = Clock()
    backend = ScriptedBackend(clock)
    warmer = Warmer(backend, KeepWarmPolicy(ttl_s=TTL, margin_s=30, read_price=0.3, write_price=3.75), clock=clock)
    requests = [400.0 * i for i in range(1, 8)]  # every 400 s > TTL: without refreshes, every one misses
    refreshes = simulate(warmer, backend, requests, until=8000)
    assert refreshes, "steady traffic must be kept warm"
    touches = sorted([0.0, *requests, *refreshes])
    for request in requests[2:]:  # once two requests show traffic, every request finds the prefix cached
        last = max(t for t in touches if t < request)
        assert request - last < TTL
    for refresh in refreshes:  # each refresh lands in the margin before expiry, never after it
        last = max(t for t in touches if t < refresh)
        assert TTL - 30 <= refresh - last < TTL
    quiet_from = requests[-1] + 3 * 400  # idle for three usual gaps: traffic has stopped
    assert not [r for r in refreshes if r > quiet_from + TTL]
    assert [d.action for d in warmer.decisions][-1] == "lapse"
    assert "rate" in warmer.decisions[-1].reason and "p_next" in warmer.decisions[-1].reason


def test_sparse_traffic_is_left_to_lapse() -> None:
    clock = Clock()
    backend = ScriptedBackend(clock)
    warmer = Warmer(backend, KeepWarmPolicy(ttl_s=TTL, margin_s=30, read_price=0.3, write_price=3.75), clock=clock)
    refreshes = simulate(warmer, backend, [100.0, 7300.0, 14500.0], until=15000)  # every 2 h
    assert refreshes == []
    assert warmer.decisions and all(d.action == "lapse" for d in warmer.decisions)
    assert all(d.lapse_cost <= d.refresh_cost for d in warmer.decisions)


def test_no_traffic_at_all_means_no_refresh() -> None:
    clock = Clock()
    backend = ScriptedBackend(clock)
    assert simulate(Warmer(backend, clock=clock), backend, [], until=3000) == []


def test_policy_takes_ttl_and_prices_from_backend_and_model() -> None:
    backend = ScriptedBackend(Clock())
    policy = policy_for(backend, "claude-sonnet-4-6")  # relative prices: only their ratio matters
    assert (policy.ttl_s, policy.read_price, policy.write_price) == (TTL, 0.1, 1.25)
    gpt = policy_for(backend, "gpt-4o")
    assert (gpt.read_price, gpt.write_price) == (0.5, 1.0)  # OpenAI before GPT-5.6: writes at plain input
    own = policy_for(backend, None)  # a backend with no vendor table: the default profile
    assert (own.read_price, own.write_price) == (backend.profile.read_multiplier, backend.profile.write_multiplier)


def test_reads_that_do_not_extend_the_cache_leave_its_expiry_at_the_last_warm_up() -> None:
    """Gemini's explicit caches expire when created/extended for, however busy: the refresh
    must come before that, not a TTL after the last request; a request after expiry re-creates."""
    clock = Clock()
    backend = ScriptedBackend(clock, reads_refresh_ttl=False)
    warmer = Warmer(backend, KeepWarmPolicy(ttl_s=TTL, margin_s=30), clock=clock)
    warmer.warm([prompt()], verify=False)
    for clock.now in (200.0, 220.0, 240.0, 260.0):
        warmer.record(prompt())
    clock.now = 275.0
    (decision,) = warmer.tick()
    assert decision.action == "refresh" and backend.warm_calls == [0.0, 275.0]
    clock.now = 900.0  # long after the refreshed cache expired: this request re-created it
    warmer.record(prompt())
    assert warmer._tracked[prompt().prefix_fingerprint].last_touch == 900.0


def test_keep_warm_refreshes_nothing_outside_the_capped_warm_set() -> None:
    clock = Clock()
    backend = ScriptedBackend(clock)
    policy = KeepWarmPolicy(ttl_s=TTL, margin_s=30, read_price=0.3, write_price=3.75)
    warmer = Warmer(backend, policy, clock=clock, refreshable=lambda: set())
    refreshes = simulate(warmer, backend, [400.0 * i for i in range(1, 8)], until=8000)
    assert refreshes == []  # the same steady traffic as above, but the prefix is not in the warm set
    assert any("outside the capped warm set" in d.reason for d in warmer.decisions)


def test_every_warm_up_and_refresh_is_reported_so_the_router_can_price_the_run_warm() -> None:
    """``on_warm`` (the server passes the router's ``mark_warm``) hears each prefix just written or refreshed."""
    clock = Clock()
    backend = ScriptedBackend(clock)
    heard: list[tuple[float, str | None]] = []
    warmer = Warmer(
        backend,
        KeepWarmPolicy(ttl_s=TTL, margin_s=30, read_price=0.3, write_price=3.75),
        clock=clock,
        on_warm=lambda p: heard.append((clock.now, p.stable[0].block_id)),
    )
    refreshes = simulate(warmer, backend, [400.0 * i for i in range(1, 8)], until=3000)
    assert heard[0] == (0.0, "category:a") and len(refreshes) > 0
    assert [t for t, _ in heard[1:]] == refreshes  # each keep-warm refresh, at its time
