"""The real `ragcache ask --json` and `ragcache demo`, and their errors, as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def ragcache(*args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ragcache.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see the local_model fixture
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_ask_json_prints_one_object_with_usage_route_and_sources(small_build: Path, local_model: Path) -> None:
    result = ragcache("ask", "--json", "--corpus", str(small_build), "--max-tokens", "8", "Is SQLite a server?")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"answer", "route", "sources", "usage", "ttft_s", "latency_s", "cost_usd", "conversation"}
    assert data["conversation"]["turn"] == 1 and data["conversation"]["compacted"] is None
    assert set(data["usage"]) == {"input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens"}
    assert data["answer"] and data["route"]["blocks"] == ["full"]
    assert "overview/serverless.html" in data["sources"]
    assert data["usage"]["input_tokens"] > 3000 and 0 < data["usage"]["output_tokens"] <= 8
    assert data["usage"]["cached_tokens"] == 0 and data["usage"]["cache_write_tokens"] > 3000  # a fresh process
    assert 0 < data["ttft_s"] <= data["latency_s"]


def test_demo_builds_the_corpus_and_serves_the_second_question_from_the_cache(tmp_path: Path) -> None:
    corpus = tmp_path / "small"
    shutil.copytree(ROOT / "corpora" / "small", corpus, ignore=shutil.ignore_patterns(".ragcache"))
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(corpus)}))
    result = ragcache("demo", "--config", str(config), "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "building" in out and (corpus / ".ragcache" / "build" / "manifest.json").exists()
    lines = [line for line in out.splitlines() if line.startswith("cache: ")]
    assert len(lines) == 2
    assert lines[0].startswith("cache: 0/")
    cached, total = (int(n) for n in lines[1].split()[1].split("/"))
    assert cached / total >= 0.9
    assert "Second question served from the cache" in out
    assert result.stderr.count("waiting for first token…") == 2 and "prefill 0/" in result.stderr  # issue 26 item 1
    assert "135M model shows the cache at work, not answer quality" in out and "configs/vllm.yaml" in out
    for line in (out + result.stderr).splitlines():  # no library logs or warnings (issue 10)
        assert "- INFO -" not in line and "WARNING" not in line and "Warning" not in line, line


def test_chat_keeps_the_turns_after_the_cached_prefix(small_build: Path, local_model: Path) -> None:
    cmd = [sys.executable, "-m", "ragcache.cli", "chat", "--corpus", str(small_build), "--max-tokens", "6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, input="Is SQLite a server?\nDoes it need configuration?\nexit\nignored\n",
                            env=env, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    reports = [line for line in result.stderr.splitlines() if line.startswith("cache: ")]
    assert len(reports) == 2  # 'exit' ends the chat
    first_written = int(reports[0].split("written")[0].split()[-1])
    cached = int(reports[1].split()[1].split("/")[0])
    assert cached == first_written > 3000  # turn 2 reuses the corpus prefix and turn 1's question
    lines = result.stderr.splitlines()  # each turn's wait and prefill show on stderr (issue 26 item 1)
    assert lines.count("waiting for first token…") == 2 and any(line.startswith("prefill 0/") for line in lines)


def test_an_unknown_model_exits_non_zero_without_a_traceback(small_build: Path) -> None:
    result = ragcache("ask", "--corpus", str(small_build), "--model", "no-such-model", "hi")
    assert result.returncode == 4
    assert "unknown model 'no-such-model'" in result.stderr and "Traceback" not in result.stderr


def test_a_question_longer_than_the_context_window_exits_non_zero(small_build: Path) -> None:
    result = ragcache("ask", "--corpus", str(small_build), "word " * 9000)
    assert result.returncode == 6
    assert "ContextLengthError" in result.stderr and "context window" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_corpus_exits_non_zero_with_a_clear_message(tmp_path: Path) -> None:
    corpus = tmp_path / "empty"
    (corpus / "docs").mkdir(parents=True)
    (corpus / "corpus.yaml").write_text("name: empty\ninstructions: Answer.\n")
    for args in (("ask", "--corpus", str(corpus), "hi"), ("demo", "--config", str(_config(tmp_path, corpus)))):
        result = ragcache(*args)
        assert result.returncode == 3, result.stderr
        assert "Traceback" not in result.stderr and str(corpus) in result.stderr


def _config(tmp_path: Path, corpus: Path) -> Path:
    path = tmp_path / "empty.yaml"
    path.write_text(yaml.safe_dump({"corpus": str(corpus)}))
    return path
