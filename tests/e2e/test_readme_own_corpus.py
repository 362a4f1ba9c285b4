"""README's "Your own corpus in five minutes", followed literally (issue 26: it must work from a clone).

The section's fenced blocks are run as written, in order, in an empty folder that holds only a
link to this checkout's ``.venv`` (as a fresh clone after ``scripts/setup.sh`` has it), against
the default local backend. Three things are adapted, none of them in the commands' text: the
answers are capped at a few tokens (``RAGCACHE_BACKEND__MAX_OUTPUT_TOKENS``), the server gets a
free port appended (``--port``; the Python block's ``8000`` is replaced by it) because other
servers may hold 8000 here, and traffic is kept in the temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.server_harness import free_port

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Your own corpus in five minutes"


def section_blocks(readme: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block in the own-corpus section, in order."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    text = readme[start : end if end != -1 else len(readme)]
    return re.findall(r"^```(\w+)\n(.*?)^```", text, flags=re.S | re.M)


def _run_bash(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, f"{code}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _wait_for(log: Path, needle: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while needle not in log.read_text(errors="replace"):
        assert process.poll() is None, f"the server exited:\n{log.read_text(errors='replace')}"
        assert time.monotonic() < deadline, f"no {needle!r} in the server log:\n{log.read_text(errors='replace')}"
        time.sleep(0.2)


def test_the_own_corpus_section_works_as_written(tmp_path: Path) -> None:
    blocks = section_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert [lang for lang, _ in blocks] == ["bash", "bash", "python", "bash"], blocks
    (setup, serve, client, rebuild) = (code for _, code in blocks)
    assert serve.strip().startswith(".venv/bin/ragcache serve --corpus ") and "\n" not in serve.strip()
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {**os.environ, "RAGCACHE_BACKEND__MAX_OUTPUT_TOKENS": "4", "PYTHONUNBUFFERED": "1",
           "RAGCACHE_CACHE__TRAFFIC_DIR": str(tmp_path / "traffic")}  # fmt: skip
    env.pop("RAGCACHE_API_KEYS", None)

    built = _run_bash(setup, tmp_path, env)
    assert "cache:" in built.stderr and "prompt tokens cached" in built.stderr  # ask answered and said so
    assert "stale" not in built.stderr

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(["bash", "-c", f"exec {serve.strip()} --port {port}"], cwd=tmp_path, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_for(log, "Application startup complete", server, 300)
        text = log.read_text(errors="replace")
        model = re.search(r"as model '([^']+)'", text)
        assert model is not None, text
        assert f"dashboard: http://127.0.0.1:{port}/" in text
        assert f'model="{model.group(1)}"' in client  # the SDK call names the corpus as its model

        answered = subprocess.run([sys.executable, "-c", client.replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert answered.returncode == 0, answered.stderr
        before = httpx.get(f"http://127.0.0.1:{port}/v1/corpora/{model.group(1)}").json()["fingerprint"]

        _run_bash(rebuild, tmp_path, env)
        _wait_for(log, f"reloaded build {before[:12]} -> ", server, 60)
        after = httpx.get(f"http://127.0.0.1:{port}/v1/corpora/{model.group(1)}").json()["fingerprint"]
        assert after != before
    finally:
        server.terminate()
        server.wait(timeout=30)
