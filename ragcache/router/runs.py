"""Runs of blocks (the router's prefix set) and the demand that ranks them.

See ``policy.py`` for how the router uses them. A run is a segment of the
canonical block order, topped up with the corpus's leading blocks when the
segment alone is short, always in canonical order, so runs never reorder blocks
and padded runs share the first run's leading bytes; demand is a decayed count
per run on a logical clock, so it is deterministic for a given question sequence
and can be saved, loaded or shared (:meth:`Demand.to_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ragcache.cache.decay import DecayedCounts

__all__ = ["CATEGORY_CUT_FILL", "DEMAND_HALF_LIFE", "RUN_FILL", "BlockRun", "Demand", "RunLookup", "plan_runs"]

DEMAND_HALF_LIFE = 200.0  # questions
CATEGORY_CUT_FILL = 0.8  # cut a run early at a category boundary only if it is at least this full
RUN_FILL = 0.8  # a run below this share of the cap is topped up with the corpus head


@dataclass(frozen=True)
class BlockRun:
    """One prefix: the corpus blocks at canonical ``positions`` (ascending).

    Its own *segment* is positions ``start`` … ``end`` − 1 (consecutive blocks that
    no other run's segment holds). When the segment alone would leave the window
    underused, the run also holds a *head*: the corpus's leading blocks, which the
    first run starts with too, so the two share their leading bytes (one cache
    entry) and every run still fills the budget.
    """

    index: int
    start: int
    end: int
    positions: tuple[int, ...]
    block_ids: tuple[str, ...]
    tokens: int

    @property
    def head(self) -> int:
        """How many of the run's blocks come from outside its segment."""
        return len(self.positions) - (self.end - self.start)


def plan_runs(block_ids: list[str], tokens: list[int], categories: list[str | None], cap: int) -> list[BlockRun]:
    """The router's runs: segments of ≤ ``cap`` tokens, an underfilled one padded with the corpus head.

    Segments cut the canonical order greedily (a block larger than ``cap`` is in
    none). A segment below ``RUN_FILL`` × ``cap`` — the last one, typically, when
    the corpus is a little larger than the window — is topped up to ``cap`` with the
    leading blocks of the corpus (in order, stopping at the first that does not fit),
    so that every run uses the window and the padded runs nest on the first one's prefix.
    """
    runs: list[BlockRun] = []
    for start, end in _segments(tokens, categories, cap):
        segment = list(range(start, end))
        size = sum(tokens[start:end])
        head: list[int] = []
        if size < RUN_FILL * cap:
            for j in range(len(block_ids)):
                if start <= j < end or tokens[j] > cap:  # its own blocks; blocks in no run
                    continue
                if size + tokens[j] > cap:
                    break
                head.append(j)
                size += tokens[j]
        positions = tuple(sorted(head + segment))
        if any(run.positions == positions for run in runs):  # tiny corpora: topped up into an earlier run
            continue
        runs.append(BlockRun(len(runs), start, end, positions, tuple(block_ids[j] for j in positions), size))
    return runs


def _segments(tokens: list[int], categories: list[str | None], cap: int) -> list[tuple[int, int]]:
    """Greedy consecutive segments of ≤ ``cap`` tokens, cut early at a category boundary once ≥ 80% full."""
    segments: list[tuple[int, int]] = []
    start, size, i = 0, 0, 0
    while i <= len(tokens):
        fits = i < len(tokens) and size + tokens[i] <= cap
        if fits:
            size += tokens[i]
            i += 1
            continue
        end = i
        if i < len(tokens) and end > start:  # overflow: prefer the last category boundary if full enough
            filled = size
            for j in range(i - 1, start, -1):
                filled -= tokens[j]
                if filled < CATEGORY_CUT_FILL * cap:
                    break
                if categories[j] != categories[j - 1]:
                    end = j
                    break
        if end > start:
            segments.append((start, end))
        if end == start and i < len(tokens):  # a block larger than cap: skip it
            end += 1
        start, size, i = end, 0, end
        if start >= len(tokens):
            break
    return segments


@dataclass(frozen=True)
class RunLookup:
    """Which runs hold a block position, without a runs × chunks matrix: per-question run scoring in
    O(k log runs + k × padded runs) for k scored chunks.

    Segments are disjoint and ascending, so a position's own run is a binary search; only the few
    runs topped up with the corpus head (module docstring of plan_runs) hold positions outside it.
    """

    starts: np.ndarray
    ends: np.ndarray
    heads: tuple[tuple[int, np.ndarray], ...]  # (run, its head positions), only for padded runs

    @classmethod
    def of(cls, runs: list[BlockRun]) -> RunLookup:
        heads = tuple(
            (run.index, np.array([p for p in run.positions if not run.start <= p < run.end], dtype=np.int64))
            for run in runs
            if run.head
        )
        starts = np.array([run.start for run in runs], dtype=np.int64)
        return cls(starts, np.array([run.end for run in runs], dtype=np.int64), heads)

    def coverage(self, positions: np.ndarray, weights: np.ndarray) -> dict[int, float]:
        """Run → its share of ``weights`` (one per block position in ``positions``); runs holding none are absent."""
        total = float(weights.sum()) or 1.0
        run = np.searchsorted(self.starts, positions, side="right") - 1
        inside = (run >= 0) & (positions < self.ends[np.maximum(run, 0)])
        out: dict[int, float] = {}
        for r, w in zip(run[inside].tolist(), weights[inside].tolist(), strict=True):
            out[r] = out.get(r, 0.0) + w
        for r, head in self.heads:
            held = float(weights[np.isin(positions, head)].sum())
            if held:
                out[r] = out.get(r, 0.0) + held
        return {r: round(v / total, 6) for r, v in sorted(out.items())}


class Demand:
    """Decayed question counts per run on a logical clock (one tick per observed question).

    The counter is the warm set's (:class:`~ragcache.cache.decay.DecayedCounts`, keyed here by
    run index), so router demand and the traffic log decay alike; they stay two objects because
    they count different things at different times: demand, the run a question's chunks point
    to, at routing time (in every router, also offline in evaluation); the traffic log, the
    prefix an answer was actually sent with (sticky sessions, top-k fall-backs), per corpus and
    merged across workers in a file.
    """

    def __init__(self, runs: int, half_life: float = DEMAND_HALF_LIFE) -> None:
        self.runs = runs
        self._counts: DecayedCounts[int] = DecayedCounts(half_life)

    @property
    def clock(self) -> int:
        return self._counts.clock

    @property
    def half_life(self) -> float:
        return self._counts.half_life

    @property
    def counts(self) -> np.ndarray:
        """The decayed count of every run now, by run index."""
        return np.array([self._counts.score(i) for i in range(self.runs)], dtype=np.float64)

    def observe(self, run: int) -> None:
        """Count one question whose best run is ``run``."""
        self._counts.record(run)

    def ranked(self) -> list[int]:
        """Runs by demand, highest first; ties to the earlier run."""
        return self._counts.ranked(range(self.runs))

    def to_dict(self) -> dict[str, Any]:
        return {"clock": self.clock, "half_life": self.half_life, "counts": [round(float(c), 6) for c in self.counts]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Demand:
        demand = cls(len(data["counts"]), float(data["half_life"]))
        demand._counts.tick(int(data["clock"]))
        for run, count in enumerate(data["counts"]):
            if count:
                demand._counts.add(run, float(count))
        return demand
