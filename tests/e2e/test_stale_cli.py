"""`ragcache ask` (and ``chat``) on a corpus edited since its build: a warning naming the files and the fix, or
(``stale_build: fail``) an error and exit 3 before anything is loaded.

The warning is checked without a model: the backend is the ``openai`` kind pointed at a closed
port, so the command prints the warning at load time and then fails to connect (exit 6).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragcache.corpus.compile import build_corpus
from tests.server_harness import free_port


@pytest.fixture
def stale_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "notes"
    (corpus / "docs").mkdir(parents=True)
    (corpus / "corpus.yaml").write_text("name: notes\n", encoding="utf-8")
    (corpus / "docs" / "a.md").write_text("# A\n\nAlpha.\n", encoding="utf-8")
    build_corpus(corpus)
    doc = corpus / "docs" / "a.md"
    doc.write_text("# A\n\nAlpha, edited after the build.\n", encoding="utf-8")
    later = doc.stat().st_mtime_ns + 5_000_000_000
    os.utime(doc, ns=(later, later))
    return corpus


def _ask(corpus: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "unused"}
    cmd = [sys.executable, "-m", "ragcache.cli", "ask", "--corpus", str(corpus), *args, "Is it alpha?"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_ask_warns_that_the_build_is_stale(stale_corpus: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    result = _ask(stale_corpus, "--backend", "openai", "--base-url", closed, "--model", "gpt-4o-mini")
    assert "warning:" in result.stderr and "the build is stale: 1 source file has changed" in result.stderr
    assert "docs/a.md (edited)" in result.stderr and f"ragcache build {stale_corpus}" in result.stderr
    assert result.returncode == 6, result.stderr  # then the closed port: a backend error


def test_chat_warns_that_the_build_is_stale_before_the_first_turn(stale_corpus: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    cmd = [sys.executable, "-m", "ragcache.cli", "chat", "--corpus", str(stale_corpus), "--backend", "openai",
           "--base-url", closed, "--model", "gpt-4o-mini"]  # fmt: skip
    env = {**os.environ, "OPENAI_API_KEY": "unused"}
    result = subprocess.run(cmd, input="Is it alpha?\n", env=env, capture_output=True, text=True, timeout=300,
                            check=False)  # fmt: skip
    assert "warning:" in result.stderr and "the build is stale: 1 source file has changed" in result.stderr
    assert result.stderr.index("the build is stale") < result.stderr.index("error:")  # before the turn fails
    assert result.returncode == 6, result.stderr


def test_stale_build_fail_exits_with_the_corpus_error(stale_corpus: Path, tmp_path: Path) -> None:
    config = tmp_path / "strict.yaml"
    config.write_text("stale_build: fail\n", encoding="utf-8")
    result = _ask(stale_corpus, "--config", str(config))
    assert result.returncode == 3, result.stderr
    assert "the build is stale" in result.stderr and "stale_build: fail" in result.stderr
