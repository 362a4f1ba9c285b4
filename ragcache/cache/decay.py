"""Counts that decay per event on a logical clock: the one counter behind the warm set's traffic
log (``cache/warmset.py``, keyed by prefix) and the router's demand (``router/runs.py``, by run).

Every :meth:`DecayedCounts.record` ticks the clock once; a count last touched ``n`` ticks ago
weighs ``0.5 ** (n / half_life)``. Decay is applied lazily (each key keeps the tick it was last
updated at), so recording is O(1) however many keys there are, and the values are a pure function
of the sequence of records: deterministic, with no wall clock.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["DecayedCounts"]

K = TypeVar("K", bound=Hashable)
_RANK_DIGITS = 6  # scores closer than this tie, and ties go to the smaller key (float noise never reorders)


class DecayedCounts(Generic[K]):
    """Per-key counts halving every ``half_life`` ticks (module docstring)."""

    def __init__(self, half_life: float) -> None:
        self.half_life = float(half_life)
        self.clock = 0
        self._decay = 0.5 ** (1.0 / self.half_life)
        self._table: dict[K, tuple[float, int]] = {}  # key -> (count, at tick)

    def record(self, key: K) -> None:
        """One event on ``key``: the clock ticks (every count decays one step), then ``key`` gains 1."""
        self.tick()
        self.add(key, 1.0)

    def tick(self, steps: int = 1) -> None:
        """Advance the clock by ``steps`` events counted elsewhere (every count decays)."""
        self.clock += steps

    def add(self, key: K, amount: float) -> None:
        """Add ``amount`` to ``key`` now, without a tick."""
        self._table[key] = (self.score(key) + amount, self.clock)

    def score(self, key: K) -> float:
        """The decayed count of ``key`` now (0 if never recorded)."""
        count, at = self._table.get(key, (0.0, self.clock))
        return count * self._decay ** (self.clock - at)

    def __iter__(self) -> Iterator[K]:
        """Every key ever counted, in first-counted order."""
        return iter(list(self._table))

    def ranked(self, keys: Iterable[K] | None = None) -> list[K]:
        """``keys`` (default: every counted key) by score, highest first; ties to the smaller key."""
        candidates = self._table if keys is None else keys
        return sorted(candidates, key=lambda k: (-round(self.score(k), _RANK_DIGITS), k))

    def __len__(self) -> int:
        return len(self._table)
