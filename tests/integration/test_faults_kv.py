"""Fault: the process is SIGKILLed while it writes a prefix's KV file to disk.

A child process warms a prefix with ``cache.persist_dir`` set, and kills itself
(SIGKILL) in the middle of the write: half the safetensors bytes are on disk,
the rename into place never happens. The next start over the same folder must
not use that file, nor a torn file at the block's own name (what a file system
without atomic rename, or a copy cut short, leaves), and must answer exactly
what a backend without any persisted KV answers (greedy decoding).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fault_harness import child_env, mounted_tmpfs, serve, tiny_corpus, wait_readyz, write_config

from ragcache.backends.base import GenerationOptions
from ragcache.backends.local import create
from ragcache.config import BackendConfig, CacheConfig
from ragcache.corpus.compile import build_corpus
from ragcache.corpus.store import load_corpus
from ragcache.prompt import Segment, SegmentKind, assemble_prompt

OPTIONS = GenerationOptions(max_tokens=8, temperature=0.0)

CHILD = """
import os, signal, sys
import safetensors.torch as st
from ragcache.backends.local import create
from ragcache.config import BackendConfig, CacheConfig
from ragcache.corpus.compile import build_corpus
from ragcache.prompt import Segment, SegmentKind, assemble_prompt

real = st.save_file
def torn_save(tensors, filename, metadata=None):
    real(tensors, filename, metadata=metadata)
    data = open(filename, "rb").read()
    with open(filename, "r+b") as f:
        f.truncate(len(data) // 2)
    os.kill(os.getpid(), signal.SIGKILL)  # mid-write: half the bytes, no rename
st.save_file = torn_save
instructions, corpus = sys.stdin.read().split("\\x00")
segments = (Segment(SegmentKind.INSTRUCTIONS, instructions, "instructions"),
            Segment(SegmentKind.CORPUS, corpus, "category:overview"))
create(BackendConfig(), CacheConfig(persist_dir=sys.argv[1])).warm(assemble_prompt(segments, "Is SQLite a server?"))
"""


def test_kill_during_kv_write_leaves_nothing_used(local_model: Path, small_build: Path, tmp_path: Path) -> None:
    corpus = load_corpus(small_build)
    instructions, text = corpus.block_text("instructions"), corpus.block_text("category:overview")[:600]
    persist = tmp_path / "kv"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(persist)],
        input=f"{instructions}\x00{text}",
        text=True,
        env=child_env(),
        capture_output=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    (torn,) = persist.iterdir()
    assert torn.name.startswith(".") and not list(persist.glob("*.safetensors")), "not killed mid-write"

    segments = (
        Segment(SegmentKind.INSTRUCTIONS, instructions, "instructions"),
        Segment(SegmentKind.CORPUS, text, "category:overview"),
    )
    prompt = assemble_prompt(segments, "Is SQLite a server?")
    reference = create(BackendConfig(), CacheConfig(enabled=True)).generate(prompt, OPTIONS)

    restarted = create(BackendConfig(), CacheConfig(persist_dir=str(persist))).generate(prompt, OPTIONS)
    assert restarted.usage.cached_tokens == 0  # the half-written temp file is never read
    assert restarted.text == reference.text

    # The same torn bytes under the block's own name: the checksum turns them away.
    (whole,) = persist.glob("*.safetensors")  # the restarted backend persisted the prefix properly
    whole.write_bytes(torn.read_bytes())
    again = create(BackendConfig(), CacheConfig(persist_dir=str(persist))).generate(prompt, OPTIONS)
    assert again.usage.cached_tokens == 0 and again.text == reference.text


def test_full_disk_is_not_persisted_cleaned_up_and_retried(tmp_path: Path) -> None:
    """Issue 27 item 5: ENOSPC on a real 8 MB tmpfs; safetensors raises SafetensorError (not OSError)."""
    import torch

    from ragcache.backends.local.kvstore import KVBlock
    from ragcache.backends.local.persist import KVFiles

    disk = tmp_path / "kv"
    with mounted_tmpfs(disk, "8m") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (needs root and mount(8)): no real full disk to test on")
        layers = tuple((torch.ones(1, 2, 64, 1024), torch.ones(1, 2, 64, 1024)) for _ in range(2))  # 2 MiB
        block = KVBlock("k", None, 64, layers, persist=True)
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (7 * 1024 * 1024))  # 1 MiB left: the block does not fit
        files = KVFiles(disk, "model-a")
        assert files.save(block) is False  # logged and counted, never raised
        assert files.stats.failed == 1 and "k" in files.stats.not_persisted, files.stats
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no temp file left
        filler.unlink()  # space again: the next save of the block persists it
        assert files.save(block) is True and files.stats.not_persisted == set()
        assert KVFiles(disk, "model-a").load("k") is not None


def test_full_disk_under_the_server_leaves_it_ready(tmp_path: Path) -> None:
    """The warm-up's prefix KV (~20 MB for the tiny corpus) cannot fit an 8 MB tmpfs: /readyz is 200
    ("not persisted" in the log), a chat is answered, and no temp file stays in the KV folder."""
    disk = tmp_path / "kv"
    with mounted_tmpfs(disk, "8m") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (needs root and mount(8)): no real full disk to test on")
        corpus = tiny_corpus(tmp_path / "tiny")
        build_corpus(corpus, tmp_path / "build")
        backend = {"kind": "local", "max_output_tokens": 4}
        config = write_config(tmp_path / "serve.yaml", corpus, tmp_path / "build", backend, persist_dir=str(disk))
        server = serve(config, tmp_path / "serve.log", timeout_s=300)
        try:
            ready = wait_readyz(server, timeout_s=300)
            assert ready.status_code == 200, ready.text
            answer = httpx.post(
                server.base_url + "/v1/chat/completions",
                timeout=120,
                json={"model": "tiny", "messages": [{"role": "user", "content": "fact0-1?"}]},
            )
            assert answer.status_code == 200, answer.text
        finally:
            server.stop()
        log = (tmp_path / "serve.log").read_text(errors="replace")
        assert "not persisted" in log and "No space left on device" in log, log[-3000:]
        assert [p.name for p in disk.iterdir() if p.name.startswith(".")] == []
