"""The server a load test runs against: ``ragcache serve`` started on loopback, or one already running.

:func:`start_server` compiles the config's corpus into a temporary build
folder, writes a copy of the config pointing at it (optionally with local
engine options such as ``max_batch``), starts the server under uvicorn in its
own process with a generated API key, and waits for ``/readyz``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from ragcache.backends.profile import vendor_table
from ragcache.config import load_config

__all__ = ["RunningServer", "launch", "start_server", "wait_ready"]

ROOT = Path(__file__).resolve().parents[2]
ServerT = TypeVar("ServerT", bound="RunningServer")


@dataclass
class RunningServer:
    """A server to send load to; ``process`` is None for one given by URL (it is left running)."""

    base_url: str  # ends without a slash
    api_key: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_config(config_path: str | None, workdir: Path, local_options: dict[str, Any], kv_dir: Path | None) -> Path:
    """A copy of the config with absolute paths, a fresh build of its corpus and ``local_options`` merged."""
    from ragcache.corpus.compile import build_corpus

    config = load_config(config_path) if config_path else load_config(ROOT / "configs" / "default.yaml")
    build_dir = workdir / "build"
    build_corpus(config.resolved_corpus(), build_dir)
    data = config.model_dump(mode="json", exclude={"source"})
    data = yaml.safe_load(yaml.safe_dump(data))  # plain types only
    data["corpus"], data["build_dir"] = str(config.resolved_corpus()), str(build_dir)
    if local_options and vendor_table(config.backend.kind).per_process_cache:  # the in-process engine's options
        data["backend"]["options"] = {**(data["backend"].get("options") or {}), **local_options}
    data.setdefault("cache", {})["keep_warm"] = False  # load figures without a background warm loop
    if kv_dir is not None:  # the local engine's persisted prefix KV: a second start skips the corpus prefill
        data["cache"]["persist_dir"] = str(kv_dir.resolve())
    else:  # cold starts measure cold: not the user's KV folder from earlier runs
        data["cache"]["persist"] = False
    path = workdir / "load-server.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
    return path


def start_server(
    config_path: str | None,
    workdir: Path,
    *,
    local_options: dict[str, Any] | None = None,
    kv_dir: Path | None = None,
    timeout_s: float = 900.0,
) -> RunningServer:
    """Start ``ragcache serve`` over ``config_path`` (default: configs/default.yaml) on a free loopback port."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = _server_config(config_path, workdir, local_options or {}, kv_dir)
    port, key = _free_port(), f"load-{secrets.token_hex(8)}"
    env = {**os.environ, "RAGCACHE_API_KEYS": key, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    code = f"from ragcache.server import serve; serve({str(config)!r}, '127.0.0.1', {port}, 1)"
    command = [sys.executable, "-c", code]
    return launch(command, port, key, workdir / "server.log", env=env, cwd=ROOT, timeout_s=timeout_s)


def launch(
    command: list[str],
    port: int,
    api_key: str,
    log_path: Path,
    *,
    env: dict[str, str],
    cwd: Path,
    timeout_s: float,
    server_type: type[ServerT] = RunningServer,  # type: ignore[assignment]
) -> ServerT:
    """Run ``command`` (a server on loopback ``port``), its output in ``log_path``, and wait until it
    is ready; a server that does not get ready is stopped. The suite's test harness starts its own here."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = server_type(f"http://127.0.0.1:{port}", api_key, process, log_path)
    try:
        wait_ready(server, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def wait_ready(server: RunningServer, timeout_s: float) -> None:
    """Poll ``/readyz`` until 200; fail early if the process exits or the warm-up failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            response = httpx.get(server.base_url + "/readyz", timeout=5)
            if response.status_code == 200:
                return
            if "failed" in response.text:
                raise RuntimeError(f"the server's warm-up failed: {response.text}\n{server.log_tail()}")
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{server.base_url}/readyz did not answer 200 within {timeout_s:.0f}s\n{server.log_tail()}")
