"""Warm-up and keep-warm of the router's prefixes (one warmer per deployment).

Warm-up sends every prefix the router can emit (``RagCache.prefixes()``)
through the backend's own ``warm``, which renders it exactly as real requests
do, then *checks* it: a repeat must report ``cached_tokens`` ≥ the prefix's
whole cacheable blocks (``Capabilities.cache_block_tokens``, above
``min_cacheable_tokens``; the prefix counted by ``Backend.prefix_tokens`` where
``exact_prefix_tokens``, else estimated from usage), else the prefix is flagged (a template difference or a
model minimum above the documented one silently wastes a warm-up).

Keep-warm: a prefix's cache expires ``ttl`` after it was last touched
(vendor TTL; on vLLM, an estimate of when LRU evicts it). Shortly before that,
the rule below decides whether to refresh it:

    p_next   = 1 - exp(-rate × ttl)                  chance a request comes in the next TTL
    refresh  = read_price × prefix_tokens            a refresh is a cache read
    lapse    = p_next × (write_price - read_price) × prefix_tokens
    refresh  iff  lapse > refresh

Where the vendor bills cache storage by the hour (Gemini), a refresh is an
extension (storage price × TTL) and a lapse a re-creation (input price), so
``policy_for`` sets read_price = storage × TTL and write_price = that + input.
A request touches the cache only where reads restart its TTL
(``Capabilities.reads_refresh_ttl``); Gemini's explicit caches expire at the
time they were created or last extended for, however busy.

``rate`` is the prefix's request rate over ``window_s``, and 0 once it has
been idle for ``idle_factor`` × its mean gap (or has fewer than two requests
in the window) — so refreshes stop when traffic stops. Every decision is
logged with its inputs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ragcache.backends.base import Backend, CacheUsage
from ragcache.backends.profile import default_profile
from ragcache.errors import BackendError, UnsupportedError
from ragcache.prompt import Prompt

__all__ = ["Decision", "KeepWarmPolicy", "WarmResult", "Warmer", "expected_cached_tokens"]

log = logging.getLogger(__name__)
WarmStatus = Literal["cached", "warmed", "not-cached", "below-minimum", "unsupported", "error"]
_TURN_SLACK = 16  # template tokens around the one-word turn a warm-up adds


def expected_cached_tokens(prefix_tokens: int, min_cacheable: int, block: int) -> int:
    """Tokens a backend must report cached once the prefix is warm: its whole blocks."""
    if prefix_tokens < max(min_cacheable, 1):
        return 0
    block = max(block, 1)
    return prefix_tokens // block * block


@dataclass(frozen=True)
class WarmResult:
    """What warming one prefix did, and whether the repeat proved it cached."""

    fingerprint: str
    label: str
    status: WarmStatus
    prefix_tokens: int = 0
    expected_cached: int = 0
    warm_usage: CacheUsage | None = None
    verify_usage: CacheUsage | None = None
    detail: str = ""

    @property
    def flagged(self) -> bool:
        """A block that should have cached but did not."""
        return self.status == "not-cached"

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "label": self.label,
            "status": self.status,
            "prefix_tokens": self.prefix_tokens,
            "expected_cached": self.expected_cached,
            "cached_tokens": self.verify_usage.cached_tokens if self.verify_usage else 0,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class KeepWarmPolicy:
    """Inputs of the refresh rule; prices are relative (only their ratio matters). The default prices
    are the default profile's (``ragcache.backends.profile.default_profile``); :func:`policy_for`
    takes a backend's own."""

    ttl_s: float = 300.0
    margin_s: float = 30.0
    window_s: float = 1800.0
    idle_factor: float = 3.0
    read_price: float = field(default_factory=lambda: default_profile().read_multiplier)
    write_price: float = field(default_factory=lambda: default_profile().write_multiplier)


@dataclass(frozen=True)
class Decision:
    """One keep-warm decision, with everything it was based on."""

    at: float
    fingerprint: str
    action: Literal["refresh", "lapse"]
    rate_per_min: float
    p_next: float
    refresh_cost: float
    lapse_cost: float
    reason: str


@dataclass
class _Tracked:
    prompt: Prompt
    prefix_tokens: int
    last_touch: float
    requests: deque[float] = field(default_factory=deque)
    decided_for: float | None = None  # the last_touch a decision was already made for


def _label(prompt: Prompt) -> str:
    route = prompt.route
    if route is not None:
        return f"{route.mode}:{'+'.join(b[:12] for b in route.block_ids)}"
    return "+".join(s.block_id or s.kind.value for s in prompt.stable)


class Warmer:
    """Warms prefixes on a backend and keeps the busy ones warm."""

    def __init__(
        self,
        backend: Backend,
        policy: KeepWarmPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        refreshable: Callable[[], Collection[str]] | None = None,
        on_warm: Callable[[Prompt], None] | None = None,
    ) -> None:
        self.backend = backend
        # Hears each prompt whose prefix was just written or refreshed (the server tells the router,
        # which prices that run as warm: docs/architecture.md "Router").
        self.on_warm = on_warm
        # The warm set's fingerprints (cache/warmset.py): keep-warm refreshes nothing outside it.
        self.refreshable = refreshable
        self.policy = policy or KeepWarmPolicy()
        self.clock = clock
        self.decisions: deque[Decision] = deque(maxlen=1000)
        self._tracked: dict[str, _Tracked] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- warm-up -------------------------------------------------------------------
    def warm(
        self,
        prompts: Iterable[Prompt],
        *,
        verify: bool = True,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> list[WarmResult]:
        """Warm each distinct prefix once (and check it with a repeat); ``progress`` hears (stage, done, total)."""
        unique: dict[str, Prompt] = {}
        for prompt in prompts:
            unique.setdefault(prompt.prefix_fingerprint, prompt)
        results = []
        for done, prompt in enumerate(unique.values()):
            if progress:
                progress("warming prefixes", done, len(unique))
            results.append(self.warm_one(prompt, verify=verify))
        if progress:
            progress("warming prefixes", len(unique), len(unique))
        return results

    def warm_one(self, prompt: Prompt, *, verify: bool = True) -> WarmResult:
        """Warm one prefix; with ``verify``, a repeat must report its whole blocks cached."""
        fingerprint, label = prompt.prefix_fingerprint, _label(prompt)
        caps = self.backend.capabilities
        if not caps.can_warm:
            return WarmResult(fingerprint, label, "unsupported", detail=f"backend {self.backend.name!r} has no cache")
        try:
            usage = self.backend.warm(prompt)
            if self.on_warm is not None:
                self.on_warm(prompt)
            tokens = self._prefix_tokens(prompt, usage)
            self.track(prompt, tokens)
            if not verify:
                return WarmResult(fingerprint, label, "warmed", tokens, 0, usage, None, "sent, not verified")
            repeat = self.backend.warm(prompt)
        except UnsupportedError as exc:
            return WarmResult(fingerprint, label, "unsupported", detail=str(exc))
        except BackendError as exc:
            return WarmResult(fingerprint, label, "error", detail=str(exc))
        expected = expected_cached_tokens(tokens, caps.min_cacheable_tokens, caps.cache_block_tokens)
        if expected == 0:
            status: WarmStatus = "below-minimum"
            detail = f"{tokens} tokens < minimum cacheable {caps.min_cacheable_tokens}"
        elif repeat.cached_tokens >= expected:
            status, detail = "cached", f"{repeat.cached_tokens} cached ≥ {expected} expected"
        else:
            status = "not-cached"
            detail = f"repeat reported {repeat.cached_tokens} cached tokens, expected ≥ {expected}"
        log.info("warm %s %s: %s", label, fingerprint[:12], detail)
        return WarmResult(fingerprint, label, status, tokens, expected, usage, repeat, detail)

    def _prefix_tokens(self, prompt: Prompt, usage: CacheUsage) -> int:
        """The engine's exact count where it has one, else the warm-up's input less its turn."""
        if self.backend.capabilities.exact_prefix_tokens:
            try:
                return self.backend.prefix_tokens(prompt)
            except BackendError as exc:
                log.warning("exact prefix count failed (%s); estimating from usage", exc)
        return max(usage.input_tokens - _TURN_SLACK, 0)

    # --- keep-warm -------------------------------------------------------------------
    def track(self, prompt: Prompt, prefix_tokens: int | None = None) -> None:
        """Start keeping ``prompt``'s prefix warm (warm-up does this)."""
        fingerprint = prompt.prefix_fingerprint
        with self._lock:
            tracked = self._tracked.get(fingerprint)
            if tracked is None:
                tokens = prefix_tokens if prefix_tokens is not None else len(prompt.system_text) // 4
                self._tracked[fingerprint] = _Tracked(prompt, tokens, self.clock())
            else:
                tracked.last_touch = self.clock()

    def record(self, prompt: Prompt) -> None:
        """A real request used this prefix: it counts as traffic, and touches the cache
        where reads restart its TTL or where it had expired (the request re-created it)."""
        fingerprint, now = prompt.prefix_fingerprint, self.clock()
        with self._lock:
            tracked = self._tracked.get(fingerprint)
        if tracked is None or self.backend.capabilities.reads_refresh_ttl:
            self.track(prompt)
        with self._lock:
            tracked = self._tracked[fingerprint]
            if now >= tracked.last_touch + self.policy.ttl_s:
                tracked.last_touch = now
            tracked.requests.append(now)

    def rate_per_s(self, fingerprint: str, now: float | None = None) -> float:
        """Recent request rate of a prefix; 0 once it has gone quiet."""
        now = self.clock() if now is None else now
        tracked = self._tracked[fingerprint]
        window = tracked.requests
        while window and window[0] < now - self.policy.window_s:
            window.popleft()
        if len(window) < 2:
            return 0.0  # one request is not yet traffic: no gap to expect the next one by
        mean_gap = max((window[-1] - window[0]) / (len(window) - 1), 1e-3)
        if now - window[-1] > self.policy.idle_factor * mean_gap:
            return 0.0  # gone quiet: several usual gaps without a request
        return 1.0 / mean_gap

    def decide(self, fingerprint: str, now: float) -> Decision:
        """Apply the refresh rule (module docstring) to one prefix now."""
        tracked, p = self._tracked[fingerprint], self.policy
        rate = self.rate_per_s(fingerprint, now)
        p_next = 1.0 - math.exp(-rate * p.ttl_s)
        refresh_cost = p.read_price * tracked.prefix_tokens
        lapse_cost = p_next * (p.write_price - p.read_price) * tracked.prefix_tokens
        refresh = lapse_cost > refresh_cost
        reason = (
            f"expires at {tracked.last_touch + p.ttl_s:.0f}; rate {rate * 60:.2f}/min, p_next {p_next:.2f}: "
            f"lapse {lapse_cost:.1f} {'>' if refresh else '<='} refresh {refresh_cost:.1f}"
        )
        return Decision(
            now, fingerprint, "refresh" if refresh else "lapse", rate * 60, p_next, refresh_cost, lapse_cost, reason
        )

    def due(self) -> list[Decision]:
        """Decisions for every prefix whose expiry is within the margin (once per expiry)."""
        now = self.clock()
        out = []
        with self._lock:
            for fingerprint, tracked in self._tracked.items():
                expires = tracked.last_touch + self.policy.ttl_s
                if tracked.decided_for == tracked.last_touch or not (expires - self.policy.margin_s <= now < expires):
                    continue
                tracked.decided_for = tracked.last_touch
                out.append(self.decide(fingerprint, now))
        return out

    def tick(self) -> list[Decision]:
        """Decide for the prefixes that are due and refresh those worth it."""
        decisions = self.due()
        allowed = self.refreshable() if decisions and self.refreshable is not None else None
        for index, decision in enumerate(decisions):
            if decision.action == "refresh" and allowed is not None and decision.fingerprint not in allowed:
                decision = replace(decision, action="lapse", reason=decision.reason + "; outside the capped warm set")
                decisions[index] = decision
            self.decisions.append(decision)
            log.info("keep-warm %s %s: %s", decision.action, decision.fingerprint[:12], decision.reason)
            if decision.action == "refresh":
                tracked = self._tracked[decision.fingerprint]
                try:
                    self.backend.warm(tracked.prompt)
                except BackendError as exc:
                    log.warning("keep-warm refresh of %s failed: %s", decision.fingerprint[:12], exc)
                    continue
                with self._lock:
                    tracked.last_touch = self.clock()
                if self.on_warm is not None:
                    self.on_warm(tracked.prompt)
        return decisions

    def start(self, interval_s: float = 5.0) -> None:
        """Run :meth:`tick` every ``interval_s`` in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.tick()

        self._thread = threading.Thread(target=loop, name="ragcache-keep-warm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def policy_for(backend: Backend, model: str | None = None, ttl_s: float | None = None) -> KeepWarmPolicy:
    """A keep-warm policy from the backend's TTL and its profile's read/write prices (``model``:
    a priced model to use instead of the backend's own, e.g. a bench's vendor model).

    vLLM and the local store have no TTL: ``ttl_s`` (``cache.ttl_s``) or 300 s
    stands for the time before LRU is likely to evict an untouched prefix; their
    prices are the profile's prefill-work multipliers.
    """
    from ragcache.backends.profile import find_vendor, profile_for

    ttl = backend.capabilities.ttl_s or ttl_s or 300.0
    margin = min(30.0, ttl / 10)
    profile = backend.profile
    if model and model != profile.model and find_vendor(model) is not None:
        profile = profile_for(None, model)
    if profile.input_price and profile.storage_per_token_hour > 0:
        # Storage billed per hour (Gemini's explicit caches): a refresh buys another TTL of
        # storage; a lapse means re-creating the cache at the input price on the next request.
        keep = profile.storage_per_token_hour * ttl / 3600
        return KeepWarmPolicy(ttl_s=ttl, margin_s=margin, read_price=keep, write_price=keep + profile.input_price)
    return KeepWarmPolicy(
        ttl_s=ttl, margin_s=margin, read_price=profile.read_multiplier, write_price=profile.write_multiplier
    )
