"""Real processes for the fault tests: a tiny corpus, a ``ragcache serve`` on a
config of the test's choosing, and a ``ragcache`` CLI run in a subprocess.

Unlike server_harness (the suite's shared server over the local model), these
servers are started per test, often over a backend that is down, and are
killed or stopped by the test itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from server_harness import ServerProcess, free_port, serve_command

ROOT = Path(__file__).resolve().parents[1]


def tiny_corpus(root: Path, documents: int = 2, words: int = 40) -> Path:
    """A corpus of ``documents`` short Markdown files (a prompt of a few hundred tokens)."""
    spec = {
        "name": "tiny",
        "title": "Tiny corpus for fault tests",
        "instructions": "Answer from the documents below.",
        "categories": [{"id": "notes", "title": "Notes", "globs": ["**"]}],
    }
    (root / "docs").mkdir(parents=True)
    (root / "corpus.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    for n in range(documents):
        body = " ".join(f"fact{n}-{w}" for w in range(words))
        (root / "docs" / f"note{n:05d}.md").write_text(f"# Note {n}\n\n{body}\n", encoding="utf-8")
    return root


def write_config(path: Path, corpus: Path, build_dir: Path, backend: dict[str, Any], **cache: Any) -> Path:
    config = {
        "corpus": str(corpus),
        "build_dir": str(build_dir),
        "backend": backend,
        "cache": {"warm_on_start": True, "keep_warm": False, "traffic_dir": str(path.parent / "traffic"), **cache},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment with the tree under test first on PYTHONPATH."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("RAGCACHE_API_KEYS", None)
    return env


def ragcache_cli(*args: str, cwd: Path, timeout_s: float = 300, **popen: Any) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ragcache.cli ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "ragcache.cli", *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        **popen,
    )


def serve(config: Path, log_path: Path, timeout_s: float = 120) -> ServerProcess:
    """Start ``ragcache serve --config CONFIG`` and wait until /healthz answers (not /readyz)."""
    port = free_port()
    cmd = serve_command(config, port)
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=config.parent, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(f"http://127.0.0.1:{port}", "", process, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"server did not answer /healthz in {timeout_s:.0f} s:\n{server.log_tail()}")


def wait_readyz(server: ServerProcess, timeout_s: float = 120) -> httpx.Response:
    """/readyz once warming has finished (200, or 503 with a ``failed`` reason)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(server.base_url + "/readyz", timeout=5)
        if response.status_code == 200 or "failed" in response.text or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def closed_port() -> int:
    """A loopback port nobody listens on (bound once, then released)."""
    return free_port()


def assert_openai_error(body: dict[str, Any], code: str) -> dict[str, Any]:
    """``body`` is ``{"error": {message, type, param, code}}`` with ``code``; the error object."""
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == code, error
    assert error["message"], error
    return error


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str) -> Iterator[bool]:
    """A real tmpfs of ``size`` at ``path`` when we may mount (root); yields False when we may not."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield False
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
