"""What the router's own traffic has cost: the floor of every walk, and whether its runs have paid.

Top-k "at equal cost" is top-k given the router's *mean* cost per question. The router's spend is
uneven (a question that writes a run pays for it, the ones after it read it), so a route that holds
top-k at its own price (a cheap warm read) can hold less than top-k at the mean. :class:`Spend`
keeps that mean so each walk can go at least as deep (docs/architecture.md "Router").

A write is priced as a bet: the route that writes a run is counted at the price the router assumed
(the write spread over the reuses it expects), and the rest of its charge is **owed** by the run.
Each later read of the run pays off its share (it is counted at the assumed price, not the read
price) until the debt is paid; a run that leaves the cache still owing is counted in full then (the
bet failed). So :attr:`Spend.mean_tokens` is what the traffic really cost except for the debts still
open, and :attr:`Spend.paid_mean_tokens` what it cost with them. The router holds the walks of its
reads to the first, a write at no premium over plain input to the second, and writes at a premium
only while :attr:`Spend.runs_paid` (``ragcache/router/policy.py``, module docstring 4-5).

**The premium-write gate starts closed** (:attr:`Spend.proven`). A premium write (Anthropic's 1.25x)
is a bet that reads will repay it; before the traffic has shown that runs pay, the router writes none
and keeps a **shadow ledger** instead: the premium each run it would have written *would* have cost
(:meth:`Spend.shadow_write`, (charge − 1) × stable tokens, and when, on the router's clock) and what
each later question that would have read that run while it was still cached *would* have saved
(:meth:`Spend.shadow_read`, (read price − 1) × stable tokens; a shadow read refreshes the run, as a
real read does). Only once the shadow premium, writes less reads, is ≤ 0 (a run would have paid back
its premium on this traffic) does the gate open, for good; from then on :attr:`Spend.runs_paid` is
the real ledger's (no new premium write while the real premium is above zero). Until then the
router's stable prefixes cost no more than plain input (only reads of warm prefixes and writes at no
premium), so its $ per token is at most top-k's. Shadow runs cost nothing and are never charged; the
shadow ledger counts no money, only evidence. Everything follows the charges recorded (real and
shadow), in arrival order: deterministic for a given traffic order, no constant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Spend"]

Key = tuple[str, ...]


@dataclass
class _Debt:
    price: float  # the price per stable token the router assumed when it wrote the run
    owed: float  # uncached-token equivalents of the write not yet paid off by reads


@dataclass
class Spend:
    """Running totals of the charges a router's observed routes paid, in uncached-token equivalents."""

    questions: int = 0
    counted: float = 0.0  # Σ what each route is counted at (its charge, a write at its assumed price)
    paid: float = 0.0  # Σ what each route was charged: charge × stable + tail
    premium: float = 0.0  # Σ (charge − 1) × stable: what stable prefixes cost above plain input (≤ 0: runs paid)
    debts: dict[Key, _Debt] = field(default_factory=dict)
    # The shadow ledger (module docstring): runs the router would have written, never charged.
    proven: bool = False  # a shadow run has paid back its premium: the premium-write gate is open
    shadow_premium: float = 0.0  # Σ (charge − 1) × stable of shadow writes and reads (≤ 0 after a read: paid)
    shadow_writes: int = 0
    shadow_reads: int = 0
    shadow_sent: dict[Key, float] = field(default_factory=dict)  # shadow run -> when last (shadow) sent

    def record(self, key: Key, charge: float, price: float, stable: int, tail: int) -> None:
        """One routed question: ``key``'s ``stable`` tokens were charged ``charge`` each (``price`` the
        router assumed for them), its ``tail`` tokens went as plain input."""
        if min(charge, price, stable, tail) < 0:
            raise ValueError(f"charges and token counts are never negative: {charge}, {price}, {stable}, {tail}")
        self.questions += 1
        self.paid += charge * stable + tail
        self.premium += (charge - 1.0) * stable
        debt = self.debts.get(key)
        counted = charge * stable + tail
        if charge > price:  # a write (or a partial one) above the assumed price: the run owes the rest
            counted = price * stable + tail
            if debt is None:
                debt = self.debts.setdefault(key, _Debt(price, 0.0))
            debt.owed += (charge - price) * stable
        elif debt is not None and charge < debt.price:  # a read pays off its share of the write
            share = min(debt.owed, (debt.price - charge) * stable)
            counted += share
            debt.owed -= share
        self.counted += counted
        if debt is not None and debt.owed <= 1e-9 * max(stable, 1):
            del self.debts[key]

    def settle(self, cached: Callable[[Key], bool]) -> None:
        """Count in full the debt of every run that is no longer ``cached``: its bet failed."""
        for key in [k for k in self.debts if not cached(k)]:
            self.counted += self.debts.pop(key).owed

    @property
    def mean_tokens(self) -> float:
        """The mean cost per question so far in uncached tokens, open debts left out: what top-k at equal
        cost sends (0: no traffic yet)."""
        return self.counted / self.questions if self.questions else 0.0

    @property
    def paid_mean_tokens(self) -> float:
        """The mean cost per question actually paid so far, open debts included (0: no traffic yet)."""
        return self.paid / self.questions if self.questions else 0.0

    @property
    def open_bet(self) -> bool:
        """Whether a written run still owes part of its write."""
        return bool(self.debts)

    @property
    def runs_paid(self) -> bool:
        """Whether a write at a premium may be made now: the shadow ledger has shown a run would have paid
        back its premium (:attr:`proven`), and the stable prefixes really sent so far cost no more than the
        same tokens as plain input (while not, a write at a premium is a bet the traffic has not backed)."""
        return self.proven and self.premium <= 1e-9 * max(self.paid, 1.0)

    # --- the shadow ledger (module docstring) --------------------------------------------

    def shadow_cached(self, key: Key, now: float, horizon: float) -> bool:
        """Whether shadow run ``key`` would still be cached at ``now`` (shadow-sent less than ``horizon`` ago)."""
        sent = self.shadow_sent.get(key)
        return sent is not None and now - sent < horizon

    def shadow_write(self, key: Key, charge: float, stable: int, now: float) -> None:
        """The router would have written ``key`` (``stable`` tokens at ``charge`` each, above 1.0) at ``now``
        had the gate been open; it sent something else and this costs nothing."""
        if charge < 0 or stable < 0:
            raise ValueError(f"charges and token counts are never negative: {charge}, {stable}")
        self.shadow_premium += (charge - 1.0) * stable
        self.shadow_writes += 1
        self.shadow_sent[key] = now

    def shadow_read(self, key: Key, charge: float, stable: int, now: float) -> None:
        """A question at ``now`` would have read shadow run ``key`` at ``charge`` (the read price): it is
        credited with what that read saves against plain input, and the run is refreshed. The gate opens
        when the shadow writes have been paid back."""
        if charge < 0 or stable < 0:
            raise ValueError(f"charges and token counts are never negative: {charge}, {stable}")
        if key not in self.shadow_sent:
            raise ValueError(f"no shadow write of {key!r} to read")
        self.shadow_premium += (charge - 1.0) * stable
        self.shadow_reads += 1
        self.shadow_sent[key] = now
        if self.shadow_premium <= 1e-9 * max(stable, 1):
            self.proven = True
            self.shadow_sent.clear()  # the gate is open for good: the real cache state takes over

    def expire_shadow(self, now: float, horizon: float) -> None:
        """Forget shadow runs not (shadow-)sent within ``horizon`` of ``now``: they would have left the cache."""
        for key in [k for k, t in self.shadow_sent.items() if now - t >= horizon]:
            del self.shadow_sent[key]
