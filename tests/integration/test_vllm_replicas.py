"""Two REAL vLLM replicas behind a REAL vllm-router (consistent hashing), driven by ragcache.

The topology comes from the project's scripts (``scripts/vllm-server.sh`` twice, each
replica pinned to its own core, and ``scripts/vllm-server.sh --router``), started
once per session (``vllm_replicas`` in conftest). ragcache talks only to the
router's URL (``options.router: true``) and sends the prefix's affinity key in
``X-Session-ID``; where each request went is read from each replica's own
``/metrics`` (``vllm:prefix_cache_queries_total`` / ``_hits_total``).

The tests run in file order: the last one stops a replica.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ragcache.backends.base import GenerationOptions
from ragcache.backends.vllm.backend import PrefixCacheStats, VllmBackend, read_prefix_cache_stats
from ragcache.config import BackendConfig, CacheConfig
from ragcache.prompt import Prompt, Segment, SegmentKind

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[2]
RUN = uuid.uuid4().hex[:8]  # prefixes new to the servers on every run
WORDS = ["pages", "journal", "locking", "cursor", "vacuum", "schema", "index", "btree", "column", "trigger"]


def prefix(name: str, words: int = 260) -> tuple[Segment, ...]:
    """A stable prefix of ~2 KV blocks (128 tokens each on CPU), unique to this run and name."""
    body = " ".join(WORDS[(i * 7 + len(name)) % len(WORDS)] for i in range(words))
    return (Segment(SegmentKind.CORPUS, f"Run {RUN}, document {name}.\n{body}\n", f"doc:{name}"),)


def stats(replicas: tuple) -> dict[str, PrefixCacheStats]:
    return {r.url: read_prefix_cache_stats(r.url) for r in replicas}


def served_by(before: dict[str, PrefixCacheStats], after: dict[str, PrefixCacheStats]) -> dict[str, float]:
    """Prefix-cache queries (prompt tokens looked up) each replica got in between."""
    return {url: after[url].queries - before[url].queries for url in before}


@pytest.fixture(scope="module")
def backend(vllm_replicas) -> Iterator[VllmBackend]:
    config = BackendConfig(
        kind="vllm", model="smollm2", base_url=vllm_replicas.router.url, options={"router": True, "block_size": 128}
    )
    backend = VllmBackend(config, CacheConfig())
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def placements() -> dict[str, str]:
    """Prefix name → the replica that served it (filled by the tests, read by the last)."""
    return {}


def ask(backend: VllmBackend, name: str, question: str = "Which words repeat?") -> int:
    """One question on prefix ``name``; its cached tokens."""
    generation = backend.generate(Prompt(stable=prefix(name), question=question), GenerationOptions(max_tokens=2))
    return generation.usage.cached_tokens


def place(backend: VllmBackend, replicas: tuple, name: str) -> tuple[str, int]:
    """Send one question on ``name``; the one replica it reached and its cached tokens."""
    before = stats(replicas)
    cached = ask(backend, name)
    reached = [url for url, n in served_by(before, stats(replicas)).items() if n > 0]
    assert len(reached) == 1, f"{name}: one request reached {reached}"
    return reached[0], cached


def test_every_request_of_one_prefix_lands_on_one_replica_and_hits_its_cache(
    vllm_replicas, backend: VllmBackend, placements: dict[str, str]
) -> None:
    replicas = vllm_replicas.replicas
    before = stats(replicas)
    cached = [ask(backend, "alpha", q) for q in ("First?", "Second question?", "A third one?")]
    after = stats(replicas)
    queries = served_by(before, after)
    owner = max(queries, key=queries.__getitem__)
    assert [url for url, n in queries.items() if n > 0] == [owner]  # all three on one replica
    assert after[owner].hits - before[owner].hits >= 2 * 256  # the 2nd and 3rd read the prefix's 2 blocks
    assert cached[0] == 0 and min(cached[1:]) >= 256
    placements["alpha"] = owner


def test_two_prefixes_can_land_on_different_replicas(
    vllm_replicas, backend: VllmBackend, placements: dict[str, str]
) -> None:
    replicas = vllm_replicas.replicas
    for i in range(8):  # each new prefix has a 1/2 chance of the other replica
        name = f"p{i}"
        placements[name], _ = place(backend, replicas, name)
        if set(placements.values()) == {r.url for r in replicas}:
            break
    assert set(placements.values()) == {r.url for r in replicas}, placements
    again, cached = place(backend, replicas, name)  # and it stays where it went, now cached
    assert again == placements[name] and cached >= 256


@pytest.fixture(scope="module")
def fresh_corpus(tmp_path_factory: pytest.TempPathFactory, vllm_replicas) -> tuple[Path, Path]:
    """One FAQ entry of corpora/small (a ~0.5k-token prefix: one pinned CPU core
    prefills it in seconds) with a per-run first line, so the prefix is new to both
    replicas; built, with a config pointing the vllm backend at the router."""
    work = tmp_path_factory.mktemp("routed")
    corpus = work / "tiny"
    (corpus / "docs" / "faq").mkdir(parents=True)
    shutil.copy(ROOT / "corpora" / "small" / "docs" / "faq" / "typing.md", corpus / "docs" / "faq")
    spec = yaml.safe_load((ROOT / "corpora" / "small" / "corpus.yaml").read_text())
    spec.update(name="tiny", instructions=f"Routed run {RUN}.\n{spec['instructions']}")
    spec["categories"] = [c for c in spec["categories"] if c["id"] == "faq"]
    (corpus / "corpus.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    config = yaml.safe_load((ROOT / "configs" / "vllm.yaml").read_text())
    config["corpus"] = str(corpus)
    options = {"router": True, "block_size": 128}
    config["backend"].update(base_url=vllm_replicas.router.url, endpoints=[], options=options, timeout_s=300)
    config["cache"].update(warm_on_start=False, keep_warm=False)
    (work / "routed.yaml").write_text(yaml.safe_dump(config))
    built = cli("build", str(corpus))
    assert built.returncode == 0, built.stderr
    return corpus, work / "routed.yaml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ragcache.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_warm_through_the_router_warms_the_replica_that_serves_and_ask_reports_cached_tokens(
    vllm_replicas, fresh_corpus: tuple[Path, Path]
) -> None:
    corpus, config = fresh_corpus
    replicas = vllm_replicas.replicas
    before = stats(replicas)
    warmed = cli("warm", "--config", str(config), "--corpus", str(corpus), "--json", "--no-verify")
    assert warmed.returncode == 0, warmed.stdout + warmed.stderr
    rows = [json.loads(line) for line in warmed.stdout.splitlines() if line.startswith("{")]
    assert rows and all(r["status"] in ("warmed", "cached") for r in rows), rows
    warmed_on = [url for url, n in served_by(before, stats(replicas)).items() if n > 0]
    assert len(warmed_on) == 1  # one prefix, one replica

    middle = stats(replicas)
    usages = []
    for question in ("What are the storage classes?", "And what is a rowid?"):
        asked = cli("ask", question, "--config", str(config), "--corpus", str(corpus), "--json", "--max-tokens", "2")
        assert asked.returncode == 0, asked.stderr
        usages.append(json.loads(asked.stdout)["usage"])
    served = [url for url, n in served_by(middle, stats(replicas)).items() if n > 0]
    assert served == warmed_on  # the warm-up went where the questions go
    assert usages[0]["cached_tokens"] >= 256  # the first question already reads the warmed prefix
    assert usages[1]["cached_tokens"] >= 256  # and so does the second


def test_a_stopped_replica_moves_only_its_own_prefixes(
    vllm_replicas, backend: VllmBackend, placements: dict[str, str]
) -> None:
    replicas = vllm_replicas.replicas
    assert len(set(placements.values())) == 2, "needs the placements of the tests above"
    victim, survivor = (r for r in sorted(replicas, key=lambda r: r.url != placements["alpha"]))
    kept = next(name for name, url in placements.items() if url == survivor.url)
    vllm_replicas.stop_replica(victim)
    time.sleep(3)  # the router checks health every second; one failure takes a worker out

    before = read_prefix_cache_stats(survivor.url)
    assert ask(backend, kept) >= 256  # the survivor's prefix stays put: still a cache hit there
    survivor_stats = read_prefix_cache_stats(survivor.url)
    assert survivor_stats.queries > before.queries

    moved = ask(backend, "alpha")  # the stopped replica's prefix moves to the survivor …
    after = read_prefix_cache_stats(survivor.url)
    assert after.queries > survivor_stats.queries
    assert moved == 0  # … where it was never cached
    assert ask(backend, "alpha") >= 256  # and from now on is cached there
