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
only while :attr:`Spend.runs_paid` (``ragcache/router/policy.py``, module docstring 4-5). Everything
follows the charges recorded, in arrival order: deterministic for a given traffic order.
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
        """Whether the stable prefixes sent so far cost no more than the same tokens as plain input (while
        not, a write at a premium is a bet the traffic has not backed)."""
        return self.premium <= 1e-9 * max(self.paid, 1.0)
