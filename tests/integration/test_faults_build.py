"""Faults around a build: a build SIGKILLed mid-way, two builds of one corpus at
once, the disk filling up during a build. Real ``ragcache build`` processes and
real signals; the outcome each time is that the previous build is served
unchanged (byte-identical manifest, every block matching its hash) and nothing
temporary is left once the next build has run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fault_harness import (
    ROOT,
    assert_openai_error,
    child_env,
    closed_port,
    mounted_tmpfs,
    ragcache_cli,
    serve,
    tiny_corpus,
    write_config,
)

from ragcache.corpus.buildlock import build_lock, lock_path
from ragcache.corpus.compile import build_corpus
from ragcache.corpus.store import load_corpus


def build_cmd(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ragcache.cli", "build", str(corpus), "--out", str(out), *extra]


def leftovers(out: Path) -> list[str]:
    """Temporary or half-swapped folders beside ``out`` (the lock file is not one)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name not in {out.name, lock_path(out).name})


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def assert_serves(out: Path, manifest: bytes) -> None:
    """``out`` is the build whose manifest is ``manifest``, byte for byte, and every block checks out."""
    assert (out / "manifest.json").read_bytes() == manifest
    corpus = load_corpus(out)
    corpus.verify()  # every block against its SHA-256
    assert corpus.block_text("instructions")


@pytest.fixture()
def previous(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A corpus built once (the build a fault must not lose), then edited so a rebuild would differ."""
    corpus = tiny_corpus(tmp_path / "corpus", documents=40, words=60)
    out = tmp_path / "out" / "build"
    build_corpus(corpus, out)
    manifest = (out / "manifest.json").read_bytes()
    (corpus / "docs" / "note00000.md").write_text("# Note 0\n\nan edit the killed build never commits\n")
    return corpus, out, manifest


def test_build_killed_mid_way_keeps_the_previous_build(previous: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    """SIGKILL ``ragcache build`` as soon as its temporary folder exists (it is then embedding chunks)."""
    corpus, out, manifest = previous
    with (tmp_path / "build.log").open("wb") as log:
        process = subprocess.Popen(build_cmd(corpus, out), env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: any(out.parent.glob(".build.tmp-*")) or process.poll() is not None, 120, "the temp folder")
        assert process.poll() is None, "the build finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    assert leftovers(out), "the killed build left nothing: it was not mid-way"
    assert_serves(out, manifest)
    build_corpus(corpus, out)  # the next build cleans up after the killed one
    assert leftovers(out) == []
    assert (out / "manifest.json").read_bytes() != manifest


def test_build_killed_between_the_two_renames_is_recovered(previous: tuple[Path, Path, bytes]) -> None:
    """The swap's worst moment (previous build moved aside, new one not yet in place), made by a real kill."""
    corpus, out, manifest = previous
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import ragcache.corpus.compile as c\n"
        "real = os.replace\n"
        "def replace(src, dst):\n"
        "    real(src, dst)\n"
        "    if Path(dst).name == 'build' and '.old-' in str(dst): os.kill(os.getpid(), signal.SIGKILL)\n"
        "c.os.replace = replace\n"
        f"c.build_corpus({str(corpus)!r}, {str(out)!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert not out.exists() and leftovers(out), "not killed mid-swap"
    with build_lock(out):  # what the next build does first: put the previous build back, clean up
        pass
    assert_serves(out, manifest)
    assert leftovers(out) == []


def test_two_builds_at_once_one_waits_nothing_corrupted(previous: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    corpus, out, _ = previous
    reference_dir = tmp_path / "reference" / "build"
    shutil.copytree(out, reference_dir)  # the same previous build: its topic lock shapes the rebuild
    reference = build_corpus(corpus, reference_dir)
    holder = os.open(lock_path(out), os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a build in progress, as far as the lock is concerned
    try:
        procs = [
            subprocess.Popen(
                build_cmd(corpus, out, "--no-index"), env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            for _ in range(2)
        ]
        time.sleep(4)
        assert [p.poll() for p in procs] == [None, None], "a build ran while the lock was held"
        assert leftovers(out) == [], "a waiting build wrote beside the build folder"
    finally:
        os.close(holder)
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert (out / "manifest.json").read_bytes() == (reference.build_dir / "manifest.json").read_bytes()
    load_corpus(out).verify()
    assert leftovers(out) == []


def test_second_build_fails_clearly_when_told_not_to_wait(previous: tuple[Path, Path, bytes]) -> None:
    from ragcache.errors import CorpusError

    corpus, out, manifest = previous
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time\n"
                f"fd = os.open({str(lock_path(out))!r}, os.O_RDWR)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX); os.pwrite(fd, str(os.getpid()).encode(), 0)\n"
                "print('locked', flush=True); time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(CorpusError) as caught:
            build_corpus(corpus, out, wait=False)
        assert str(out) in str(caught.value) and f"pid {holder.pid}" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
    assert_serves(out, manifest)


# --- the disk fills up ---------------------------------------------------------


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[bool]:
    """A real tmpfs of ``size`` at a new folder ``path`` when we may mount (root); False when we may not."""
    path.mkdir(parents=True)
    with mounted_tmpfs(path, size) as mounted:
        yield mounted


def limit_file_size() -> None:
    """In the child: no file may grow past 64 KiB (writes then fail with EFBIG, like a full disk)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_disk_full_fails_clearly_and_keeps_the_previous_build(tmp_path: Path) -> None:
    corpus = tiny_corpus(tmp_path / "corpus", documents=2, words=40)
    with small_disk(tmp_path / "disk", "256k") as real_disk:
        out = tmp_path / "disk" / "build"
        build_corpus(corpus, out)
        manifest = (out / "manifest.json").read_bytes()
        shutil.rmtree(corpus / "docs")
        tiny_corpus(tmp_path / "big", documents=60, words=250)
        shutil.copytree(tmp_path / "big" / "docs", corpus / "docs")  # ~1 MB of blocks: does not fit
        extra = {} if real_disk else {"preexec_fn": limit_file_size}
        result = ragcache_cli("build", str(corpus), "--out", str(out), "--no-index", cwd=tmp_path, **extra)
        print(f"disk full simulated with {'a 256k tmpfs' if real_disk else 'RLIMIT_FSIZE'}")
        assert result.returncode == 3, result.stdout + result.stderr
        message = result.stderr + result.stdout
        assert "CorpusError" in message and str(out) in message, message
        assert ("No space left on device" if real_disk else "File too large") in message, message
        assert_serves(out, manifest)
        assert leftovers(out) == []


def test_truncated_block_cli_exits_3_naming_the_file(previous: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    _, out, _ = previous
    block = next(b for b in load_corpus(out).manifest.blocks if b.kind == "category")
    path = out / block.filename
    path.write_bytes(path.read_bytes()[: block.bytes // 2])
    config = tmp_path / "cli.yaml"
    config.write_text(f"corpus: {out}\nbuild_dir: {out}\nbackend: {{kind: vllm, base_url: 'http://127.0.0.1:9'}}\n")
    result = ragcache_cli("ask", "--config", str(config), "What is fact1-2?", cwd=ROOT)
    assert result.returncode == 3, result.stdout + result.stderr
    assert str(path) in result.stderr and "SHA-256" in result.stderr, result.stderr
    assert result.stdout.strip() == ""  # no answer, not even half of one


def test_truncated_block_server_answers_an_error_never_half_an_answer(tmp_path: Path) -> None:
    """Blocks truncated under a running server, then a restart.

    The server read and checked every block at startup (``preload``, so it keeps answering when a rebuild
    replaces the folder): the truncation cannot reach a request, which goes on from memory to the backend
    (down here: a 503 JSON error, never half an answer). A restart reads the damaged blocks and refuses them.
    The corpus fits whole (full mode): no router index to embed before the block is read.
    """
    out = build_corpus(tiny_corpus(tmp_path / "corpus"), tmp_path / "out" / "build").build_dir
    backend = {
        "kind": "vllm",
        "model": "smollm2",
        "base_url": f"http://127.0.0.1:{closed_port()}",
        "context_window": 8192,
    }
    config = write_config(tmp_path / "serve.yaml", out, out, backend, warm_on_start=False)
    server = serve(config, tmp_path / "serve.log")
    try:
        for block in load_corpus(out).manifest.blocks:
            (out / block.filename).write_bytes((out / block.filename).read_bytes()[: block.bytes // 2])
        body = {"model": "tiny", "messages": [{"role": "user", "content": "What is fact1-2?"}], "max_tokens": 4}
        for stream in (False, True):
            response = httpx.post(server.base_url + "/v1/chat/completions", json={**body, "stream": stream}, timeout=60)
            assert response.status_code == 503 and response.headers["content-type"] == "application/json"
            assert_openai_error(response.json(), "backend_unavailable")
        assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
    with pytest.raises(RuntimeError, match="SHA-256") as caught:  # a restart refuses the damaged build
        serve(config, tmp_path / "restart.log", timeout_s=120)
    assert "exited with 3" in str(caught.value)
