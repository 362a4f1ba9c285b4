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

from fault_harness import child_env

from ragcache.backends.base import GenerationOptions
from ragcache.backends.local import create
from ragcache.config import BackendConfig, CacheConfig
from ragcache.corpus.store import load_corpus
from ragcache.prompt import Segment, SegmentKind, assemble_prompt

OPTIONS = GenerationOptions(max_tokens=8, temperature=0.0)

CHILD = """
import os, signal, sys
import safetensors.torch as st
from ragcache.backends.local import create
from ragcache.config import BackendConfig, CacheConfig
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
    child = subprocess.run([sys.executable, "-c", CHILD, str(persist)], input=f"{instructions}\x00{text}",
                           text=True, env=child_env(), capture_output=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    (torn,) = persist.iterdir()
    assert torn.name.startswith(".") and not list(persist.glob("*.safetensors")), "not killed mid-write"

    segments = (Segment(SegmentKind.INSTRUCTIONS, instructions, "instructions"),
                Segment(SegmentKind.CORPUS, text, "category:overview"))
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
