"""`ragcache warm` then `ragcache ask` against the REAL vLLM server: the first
question of a freshly built corpus is already a cache hit.

The corpus is corpora/small with a per-run first line in its instructions, so
its prefix is new to the server: only the warm-up can have cached it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vllm_harness import fresh_small_corpus

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "ragcache.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def fresh_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_small_corpus(tmp_path_factory.mktemp("warmcli") / "small")


def test_warm_before_the_first_question_makes_it_a_hit(vllm_server, fresh_corpus: Path) -> None:
    common = ["--config", "configs/vllm.yaml", "--corpus", str(fresh_corpus), "--base-url", vllm_server.url]
    warmed = run("warm", *common, "--json")
    assert warmed.returncode == 0, warmed.stderr
    rows = [json.loads(line) for line in warmed.stdout.splitlines() if line.startswith("{")]
    assert rows and all(r["status"] == "cached" for r in rows)
    expected = min(r["expected_cached"] for r in rows)
    assert expected >= 1024

    asked = run("ask", "What are the storage classes?", *common, "--json", "--max-tokens", "8")
    assert asked.returncode == 0, asked.stderr
    usage = json.loads(asked.stdout)["usage"]
    assert usage["cached_tokens"] >= expected  # the very first question reads the warmed prefix


def test_warm_reports_an_unreachable_backend_with_exit_code_6(fresh_corpus: Path) -> None:
    from vllm_harness import free_port

    result = run("warm", "--config", "configs/vllm.yaml", "--corpus", str(fresh_corpus),
                 "--base-url", f"http://127.0.0.1:{free_port()}", "--json")  # fmt: skip
    assert result.returncode == 6
    assert json.loads(result.stdout.splitlines()[0])["status"] == "error"
    assert "cannot connect" in result.stdout


def test_vllm_command_prints_a_serve_line_for_the_built_corpus(fresh_corpus: Path) -> None:
    result = run("vllm-command", "--config", "configs/vllm.yaml", "--corpus", str(fresh_corpus))
    assert result.returncode == 0, result.stderr
    argv = result.stdout.split()
    assert argv[:2] == ["vllm", "serve"]
    assert "--enable-prefix-caching" in argv and "--enable-prompt-tokens-details" in argv
    length = int(argv[argv.index("--max-model-len") + 1])
    assert length % 1024 == 0 and 4096 <= length <= 8192  # ~3.7k-token corpus + snippets, history, answer
