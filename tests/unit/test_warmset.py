"""The warm set (ragcache/cache/warmset.py): traffic with decay, its file, pins, caps, the warm lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ragcache.cache.warmset import (
    TrafficLog,
    WarmSetLimits,
    acquire_warm_lock,
    parse_pins,
    router_guess,
    select_warm_set,
)
from ragcache.errors import ConfigError

A, B, C, D = ("a",), ("b",), ("c",), ("c", "d")
KNOWN = frozenset({"a", "b", "c", "d"})


def log_of(*requests: tuple[str, ...], half_life: float = 1000.0) -> TrafficLog:
    log = TrafficLog("fp", half_life)
    for blocks in requests:
        log.record(blocks)
    return log


def test_decay_halves_an_old_hit_after_half_life_requests() -> None:
    log = log_of(A, *[B] * 10, half_life=10)
    assert log.score(A) == pytest.approx(0.5)
    assert log.ranked() == [B, A]


def test_file_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    one, two = log_of(A, B, B, C), log_of(A, B, B, C)
    assert one.to_json() == two.to_json()
    assert "time" not in one.to_json()
    one.save(tmp_path / "fp.json")
    loaded = TrafficLog.load(tmp_path / "fp.json", "fp", 1000.0)
    assert loaded.ranked() == [B, C, A]  # C is more recent than A: decayed less
    assert loaded.to_json() == (tmp_path / "fp.json").read_text()


def test_two_workers_merge_their_requests_into_one_file(tmp_path: Path) -> None:
    path = tmp_path / "fp.json"
    first, second = log_of(A, A), log_of(B)
    first.save(path)
    second.save(path)
    second.record(B)
    second.save(path)  # only the new request is added, not the whole view again
    merged = TrafficLog.load(path, "fp", 1000.0)
    assert merged.requests == 4
    assert merged.score(B) == pytest.approx(2.0, rel=0.01)
    assert merged.score(A) == pytest.approx(2.0, rel=0.01)


def test_a_file_of_another_corpus_is_ignored_and_a_broken_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "fp.json"
    log_of(A).save(path)
    assert not TrafficLog.load(path, "other", 1000.0)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=str(path)):
        TrafficLog.load(path, "fp", 1000.0)


def test_pins_parse_full_and_joined_ids_and_name_bad_ones() -> None:
    assert parse_pins(["full", "d+c"], ["a", "b", "c", "d"], ("full",)) == [("full",), ("c", "d")]
    with pytest.raises(ConfigError, match=r"warm_pins\[1\].*'zz'"):
        parse_pins(["a", "zz"], ["a", "b"], ("full",))


def select(traffic: TrafficLog | None, limits: WarmSetLimits, pins: list[tuple[str, ...]] = ()) -> list:
    return select_warm_set(
        pins=pins,
        traffic=traffic,
        guess=lambda n: [A, B, C, D][:n],
        tokens_of=lambda blocks: 100 * len(blocks),
        limits=limits,
        known_blocks=KNOWN,
    )


def test_pins_then_traffic_under_the_count_cap() -> None:
    traffic = log_of(C, C, B, ("gone",))
    assert select(traffic, WarmSetLimits(max_prefixes=2), pins=[D]) == [D, C]
    assert select(traffic, WarmSetLimits(max_prefixes=16)) == [C, B]  # unknown blocks dropped, no guess added


def test_without_traffic_the_router_guess_follows_the_pins() -> None:
    assert select(TrafficLog("fp"), WarmSetLimits(max_prefixes=3), pins=[D]) == [D, A, B]


def test_the_token_cap_skips_what_does_not_fit() -> None:
    assert select(None, WarmSetLimits(max_prefixes=16, max_tokens=250), pins=[D]) == [D]
    assert select(None, WarmSetLimits(max_prefixes=16, max_tokens=300), pins=[D]) == [D, A]


class _HotRouter:
    def hot_prefixes(self, n: int) -> list[tuple[str, ...]]:
        return [C, B, A][:n]


def test_router_guess_uses_hot_prefixes_where_the_router_has_it() -> None:
    assert router_guess(_HotRouter(), lambda: [A, B, C], 2) == [C, B]
    assert router_guess(object(), lambda: [A, B, C], 2) == [A, B]


def test_only_one_process_gets_the_warm_lock(tmp_path: Path) -> None:
    path = tmp_path / "fp.json"
    held = acquire_warm_lock(path)
    assert held is not None
    code = (
        "import sys; from pathlib import Path; from ragcache.cache.warmset import acquire_warm_lock; "
        f"sys.exit(0 if acquire_warm_lock(Path({str(path)!r})) is None else 1)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0  # another process: refused
    held.close()
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 1  # released: it gets it
