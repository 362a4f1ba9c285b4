"""The warm set: which prefixes to warm, from observed traffic and operator pins, under a cap.

Warming every prefix a router can emit does not scale (thousands of block
pairs on a mid-size corpus, each sent twice, in every worker). Instead:

1. **Traffic.** Every answered request counts its prefix (the route's corpus
   blocks) in a :class:`TrafficLog`. Counts decay exponentially *per request*
   (``half_life_requests``): after that many later requests an old hit weighs
   half (``cache/decay.py``, the counter the router's demand uses too). Decay by
   request count, not by clock, keeps the log a pure function of
   the request sequence, so its file is deterministic: sorted keys, fixed
   separators, scores rounded, no timestamp. The file lives in
   ``cache.traffic_dir`` (default ``$RAGCACHE_HOME/traffic``), one per corpus
   fingerprint, so a restart and ``ragcache warm`` start from what traffic used.
   Workers merge their counts into it under an exclusive ``flock``.
2. **Pins.** ``cache.warm_pins`` lists prefixes the operator always wants warm:
   ``"full"`` (every corpus block) or block ids joined by ``+``.
3. **Fallback.** Without traffic yet, the router's own guess follows the pins:
   ``hot_prefixes(n)`` where the router has it, else ``prefixes()`` in
   canonical order.

The result is capped by count (``cache.warm_max_prefixes``) and by cost
(``cache.warm_max_tokens``: the prefixes' total tokens; a prefix that would
pass it is skipped, smaller ones after it may still fit).

One warmer per deployment: :func:`acquire_warm_lock` takes an exclusive,
non-blocking ``flock`` on a lock file beside the traffic file; a worker that
does not get it skips warm-up and keep-warm.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from ragcache.cache.decay import DecayedCounts
from ragcache.errors import ConfigError
from ragcache.models import cache_home

__all__ = [
    "HotPrefixRouter",
    "TrafficLog",
    "WarmSetLimits",
    "acquire_warm_lock",
    "parse_pins",
    "router_guess",
    "select_warm_set",
    "traffic_path",
]

Blocks = tuple[str, ...]
_FULL_PIN = "full"
_MIN_SCORE = 1e-3  # below this a prefix has decayed out of the log
_FILE_VERSION = 1


@runtime_checkable
class HotPrefixRouter(Protocol):
    """A router that can say which of its prefixes it expects to be busiest."""

    def hot_prefixes(self, n: int) -> list[Blocks]: ...


def router_guess(router: object, prefixes: Callable[[], list[Blocks]], n: int) -> list[Blocks]:
    """The router's own ``n`` likeliest prefixes: ``hot_prefixes`` where it has it, else canonical order."""
    if isinstance(router, HotPrefixRouter):
        return list(router.hot_prefixes(n))[:n]
    return prefixes()[:n]


@dataclass(frozen=True)
class WarmSetLimits:
    """The caps and pins of ``cache.*`` (count, total tokens, pinned prefixes)."""

    max_prefixes: int = 16
    max_tokens: int | None = None
    pins: tuple[str, ...] = ()


class TrafficLog:
    """Per-prefix request scores with per-request exponential decay (module docstring)."""

    def __init__(self, corpus: str, half_life_requests: float = 1000.0) -> None:
        if half_life_requests <= 0:
            raise ConfigError(f"cache.warm_half_life_requests must be > 0, got {half_life_requests}")
        self.corpus = corpus
        self.half_life = float(half_life_requests)
        self._scores: DecayedCounts[Blocks] = DecayedCounts(self.half_life)  # every request
        self._new: DecayedCounts[Blocks] = DecayedCounts(self.half_life)  # requests not yet merged into the file
        self.unsaved = 0

    @property
    def requests(self) -> int:
        """Requests counted (this process's and, once saved or loaded, the file's)."""
        return self._scores.clock

    def record(self, blocks: Sequence[str]) -> None:
        """One request on the prefix of ``blocks``."""
        key = tuple(blocks)
        if not key:
            return
        self.unsaved += 1
        self._scores.record(key)
        self._new.record(key)

    def score(self, blocks: Sequence[str]) -> float:
        """The decayed count of ``blocks`` now."""
        return self._scores.score(tuple(blocks))

    def ranked(self) -> list[Blocks]:
        """Prefixes by score, highest first (ties in block order, so the order is deterministic)."""
        return [b for b in self._scores.ranked() if self.score(b) >= _MIN_SCORE]

    def __bool__(self) -> bool:
        return bool(self.ranked())

    # --- the file ------------------------------------------------------------------
    def to_json(self) -> str:
        """Deterministic file content: every score decayed to now, rounded, sorted."""
        rows = [{"blocks": list(b), "score": round(self.score(b), 6)} for b in sorted(self._scores)]
        body = {
            "version": _FILE_VERSION,
            "corpus": self.corpus,
            "half_life_requests": self.half_life,
            "requests": self.requests,
            "prefixes": [row for row in rows if row["score"] >= _MIN_SCORE],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, corpus: str, half_life_requests: float, where: str = "") -> TrafficLog:
        """A log read from its file (an unreadable file is an error naming it)."""
        log = cls(corpus, half_life_requests)
        try:
            body = json.loads(text)
            if body.get("corpus") != corpus:
                return log  # another corpus's file: start afresh
            log._scores.tick(int(body["requests"]))
            for row in body["prefixes"]:
                log._scores.add(tuple(str(b) for b in row["blocks"]), float(row["score"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"traffic file {where or '(text)'} is not a ragcache traffic log: {exc}") from exc
        return log

    def merge_into(self, other: TrafficLog) -> None:
        """Add this log's unsaved requests to ``other`` (the file's view), decaying ``other`` by them."""
        other._scores.tick(self.unsaved)
        for key in self._new:
            mine = self._new.score(key)
            if mine >= _MIN_SCORE:
                other._scores.add(key, mine)

    @classmethod
    def load(cls, path: Path, corpus: str, half_life_requests: float) -> TrafficLog:
        """The log in ``path``, or an empty one where there is none yet."""
        if not path.exists():
            return cls(corpus, half_life_requests)
        return cls.from_json(path.read_text(encoding="utf-8"), corpus, half_life_requests, str(path))

    def save(self, path: Path) -> None:
        """Merge this process's new requests into ``path`` under a lock (workers share the file).

        Only requests recorded since the last save are added; afterwards this
        log holds the merged view.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_suffix(".lock")):
            on_disk = TrafficLog.load(path, self.corpus, self.half_life)
            self.merge_into(on_disk)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(on_disk.to_json(), encoding="utf-8")
            tmp.replace(path)
        self._scores, self._new, self.unsaved = on_disk._scores, DecayedCounts(self.half_life), 0


def traffic_path(traffic_dir: str | Path | None, corpus_fingerprint: str) -> Path:
    """Where the traffic log of a corpus lives (``cache.traffic_dir`` or ``$RAGCACHE_HOME/traffic``)."""
    base = Path(traffic_dir) if traffic_dir else cache_home() / "traffic"
    return base / f"{corpus_fingerprint}.json"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def acquire_warm_lock(traffic_file: Path) -> IO[str] | None:
    """The deployment's warmer lock (keep the handle open while warming), or None if another process has it."""
    path = traffic_file.with_suffix(".warm.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def parse_pins(pins: Sequence[str], corpus_blocks: Sequence[str], full: Blocks) -> list[Blocks]:
    """``cache.warm_pins`` as block tuples in corpus order (``full``: the whole corpus's prefix);
    an unknown block id is an error naming the pin."""
    order = {b: i for i, b in enumerate(corpus_blocks)}
    out: list[Blocks] = []
    for index, pin in enumerate(pins):
        if pin.strip() == _FULL_PIN:
            out.append(full)
            continue
        ids = [part.strip() for part in pin.split("+") if part.strip()]
        unknown = [b for b in ids if b not in order]
        if not ids or unknown:
            raise ConfigError(
                f"cache.warm_pins[{index}] = {pin!r}: unknown block id(s) {unknown or [pin]}; "
                f"use 'full' or corpus block ids joined by '+' (see `ragcache inspect`)"
            )
        out.append(tuple(sorted(dict.fromkeys(ids), key=order.__getitem__)))
    return out


def select_warm_set(
    *,
    pins: Sequence[Blocks],
    traffic: TrafficLog | None,
    guess: Callable[[int], list[Blocks]],
    tokens_of: Callable[[Blocks], int],
    limits: WarmSetLimits,
    known_blocks: frozenset[str],
) -> list[Blocks]:
    """Pins, then traffic by score (or the router's guess without traffic), under both caps."""
    ranked = [b for b in traffic.ranked() if set(b) <= known_blocks] if traffic is not None else []
    candidates = [*pins, *(ranked or guess(limits.max_prefixes))]
    chosen: list[Blocks] = []
    spent = 0
    for blocks in dict.fromkeys(candidates):
        if len(chosen) >= limits.max_prefixes:
            break
        cost = tokens_of(blocks)
        if limits.max_tokens is not None and spent + cost > limits.max_tokens:
            continue
        chosen.append(blocks)
        spent += cost
    return chosen
