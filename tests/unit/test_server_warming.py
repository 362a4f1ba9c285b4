"""One warmer per deployment: of two server processes' warming parts over one corpus, only the
first takes the warm lock; the other skips and says so (what ``/readyz`` shows as ``warm_detail``).

Real parts: corpora/small on the local backend with a persisted KV store (a store workers share,
so the lock applies); warm-up itself is off here — the lock and the traffic file are under test.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ragcache.app import RagCache
from ragcache.cache.warmset import TrafficLog
from ragcache.config import CacheConfig, Config
from ragcache.prompt import Route
from ragcache.server.corpora import Corpora
from ragcache.server.warming import Warming


def _rag(build: Path, tmp: Path) -> RagCache:
    cache = CacheConfig(
        warm_on_start=False, keep_warm=False, persist_dir=str(tmp / "kv"), traffic_dir=str(tmp / "traffic")
    )
    return RagCache.from_config(Config(corpus=build, build_dir=build, cache=cache))


def test_only_one_worker_warms_and_traffic_reaches_the_shared_file(
    small_build: Path, local_model: Path, tmp_path: Path
) -> None:
    first, second = _rag(small_build, tmp_path), _rag(small_build, tmp_path)
    one, two = Warming(Corpora([first])), Warming(Corpora([second]))
    try:
        asyncio.run(one.warm_all())
        asyncio.run(two.warm_all())
        name = first.corpus.name
        assert one.all_ready() and two.all_ready()
        assert one.detail[name].startswith("warmed by this worker")
        assert two.detail[name].startswith("skipped: another worker holds") and ".warm.lock" in two.detail[name]
        blocks = first.router.prefixes()[0]
        one.record(name, Route("full", blocks))
        two.record(name, Route("full", blocks))
        # Recording an answer's prefix tells the router it is warm (router v4 prices it as a read).
        assert first.router.route("anything", observe=False, now=time.monotonic()).pricing["warm"] == 1.0
        assert second.router.route("anything", observe=False, now=time.monotonic()).pricing["warm"] == 1.0
    finally:
        one.stop()
        two.stop()  # both merge their traffic into the file on the way out
        first.close()
        second.close()
    saved = TrafficLog.load(first.traffic_file, first.corpus.fingerprint, 1000.0)
    assert saved.requests == 2 and saved.ranked() == [tuple(blocks)]
    assert [p.route.block_ids for p in first.warm_set(saved)] == [tuple(blocks)]


def _prepared_pair(small_build: Path, tmp_path: Path) -> tuple[RagCache, RagCache]:
    """A worker that takes the warm lock (warm-up off: it warms nothing) and one that skips it and prepares."""
    first = _rag(small_build, tmp_path)
    cache = CacheConfig(warm_on_start=True, keep_warm=False, persist_dir=str(tmp_path / "kv"),
                        traffic_dir=str(tmp_path / "traffic"))  # fmt: skip
    return first, RagCache.from_config(Config(corpus=small_build, build_dir=small_build, cache=cache))


def test_a_worker_that_does_not_warm_counts_its_prefixes_before_it_is_ready(
    small_build: Path, local_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the first requests would otherwise do (the vllm backend: learn the prefix's token ids and
    load the tail renderer) happens before /readyz: the skipping worker counts each warm-set prefix."""
    first, second = _prepared_pair(small_build, tmp_path)
    counted: list[str] = []
    real = second.backend.prefix_tokens
    monkeypatch.setattr(second.backend, "prefix_tokens", lambda p: counted.append(p.prefix_fingerprint) or real(p))
    one, two = Warming(Corpora([first])), Warming(Corpora([second]))
    try:
        asyncio.run(one.warm_all())
        asyncio.run(two.warm_all())
        name = second.corpus.name
        assert two.detail[name].startswith("skipped: another worker holds")
        assert counted == [p.prefix_fingerprint for p in second.warm_set(two.traffic[name])] != []
        assert two.detail[name].endswith(f"; {len(counted)} prefix(es) prepared here")
        assert two.all_ready()
    finally:
        one.stop()
        two.stop()
        first.close()
        second.close()


def test_a_preparation_that_fails_is_logged_and_the_worker_is_ready(
    small_build: Path,
    local_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ragcache.errors import BackendUnavailableError

    first, second = _prepared_pair(small_build, tmp_path)

    def down(prompt: object) -> int:
        raise BackendUnavailableError("engine at http://127.0.0.1:9 is not up yet")

    monkeypatch.setattr(second.backend, "prefix_tokens", down)
    one, two = Warming(Corpora([first])), Warming(Corpora([second]))
    try:
        asyncio.run(one.warm_all())
        with caplog.at_level("WARNING", logger="ragcache.server"):
            asyncio.run(two.warm_all())
        assert two.all_ready()  # the first request learns it instead
        assert f"corpus {second.corpus.name!r}: preparing its prefixes failed" in caplog.text
        assert "not up yet" in caplog.text
    finally:
        one.stop()
        two.stop()
        first.close()
        second.close()
