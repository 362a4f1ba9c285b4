"""Runs of consecutive blocks (the router's prefix set) and the demand that ranks them.

See ``policy.py`` for how the router uses them. A run is a slice of the
canonical block order, so runs never reorder blocks; demand is a decayed count
per run on a logical clock, so it is deterministic for a given question sequence
and can be saved, loaded or shared (:meth:`Demand.to_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CATEGORY_CUT_FILL", "DEMAND_HALF_LIFE", "BlockRun", "Demand", "plan_runs"]

DEMAND_HALF_LIFE = 200.0  # questions
CATEGORY_CUT_FILL = 0.8  # cut a run early at a category boundary only if it is at least this full


@dataclass(frozen=True)
class BlockRun:
    """Consecutive corpus blocks (positions ``start`` … ``end`` − 1) that form one prefix."""

    index: int
    start: int
    end: int
    block_ids: tuple[str, ...]
    tokens: int


def plan_runs(block_ids: list[str], tokens: list[int], categories: list[str | None], cap: int) -> list[BlockRun]:
    """Cut the canonical blocks into runs of ≤ ``cap`` tokens; a block larger than ``cap`` is in none."""
    runs: list[BlockRun] = []
    start, size, i = 0, 0, 0
    while i <= len(block_ids):
        fits = i < len(block_ids) and size + tokens[i] <= cap
        if fits:
            size += tokens[i]
            i += 1
            continue
        end = i
        if i < len(block_ids) and end > start:  # overflow: prefer the last category boundary if full enough
            filled = size
            for j in range(i - 1, start, -1):
                filled -= tokens[j]
                if filled < CATEGORY_CUT_FILL * cap:
                    break
                if categories[j] != categories[j - 1]:
                    end = j
                    break
        if end > start:
            runs.append(BlockRun(len(runs), start, end, tuple(block_ids[start:end]), sum(tokens[start:end])))
        if end == start and i < len(block_ids):  # a block larger than cap: skip it
            end += 1
        start, size, i = end, 0, end
        if start >= len(block_ids):
            break
    return runs


class Demand:
    """Decayed question counts per run on a logical clock (one tick per observed question)."""

    def __init__(self, runs: int, half_life: float = DEMAND_HALF_LIFE) -> None:
        self.counts = np.zeros(runs, dtype=np.float64)
        self.clock = 0
        self.half_life = half_life

    def observe(self, run: int) -> None:
        """Count one question whose best run is ``run``."""
        self.counts *= 0.5 ** (1.0 / self.half_life)
        self.counts[run] += 1.0
        self.clock += 1

    def ranked(self) -> list[int]:
        """Runs by demand, highest first; ties to the earlier run."""
        return [int(i) for i in np.lexsort((np.arange(len(self.counts)), -self.counts))]

    def hot(self, limit: int) -> set[int]:
        """The runs worth keeping warm: all when there are at most ``limit``, else the top ones asked for."""
        if len(self.counts) <= limit:
            return set(range(len(self.counts)))
        return {i for i in self.ranked()[:limit] if self.counts[i] > 0}

    def to_dict(self) -> dict[str, Any]:
        return {"clock": self.clock, "half_life": self.half_life, "counts": [round(float(c), 6) for c in self.counts]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Demand:
        demand = cls(len(data["counts"]), float(data["half_life"]))
        demand.counts[:] = data["counts"]
        demand.clock = int(data["clock"])
        return demand
