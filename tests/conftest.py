"""Shared fixtures; each section belongs to one capability."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# --- the real REST server (tests/server_harness.py) ---------------------------
from server_harness import ServerProcess, start_server


@pytest.fixture(scope="session")
def ragcache_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``ragcache serve`` over corpora/small and the local model, once per test session."""
    server = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield server
    finally:
        server.stop()


# --- end REST server ------------------------------------------------------------


# --- the local KV folder: never the user's own (ragcache/backends/local/persist.py) ---
# The local engine persists its stable prefixes by default. The whole suite (and every process it
# starts) writes them into one temporary folder, emptied after each test so each test starts cold.
KV_DIR = Path(tempfile.mkdtemp(prefix="ragcache-test-kv-"))
os.environ["RAGCACHE_KV_DIR"] = str(KV_DIR)


@pytest.fixture(autouse=True)
def _empty_kv_dir() -> Iterator[None]:
    yield
    for path in KV_DIR.iterdir() if KV_DIR.is_dir() else ():
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    shutil.rmtree(KV_DIR, ignore_errors=True)


# --- end local KV folder --------------------------------------------------------


# --- the local model and corpora/small, built once (ragcache/app.py, backends/local/) ---


@pytest.fixture(scope="session")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """corpora/small compiled once per session into a temporary build folder (no router index)."""
    from ragcache.corpus.compile import build_corpus

    out = tmp_path_factory.mktemp("small") / "build"
    build_corpus(Path(__file__).resolve().parents[1] / "corpora" / "small", out)
    return out


@pytest.fixture(scope="session")
def local_model() -> Path:
    """The default local model's folder, loaded once into this process (backends share it).

    Tests run torch on one thread: on the shared 2-core machines two OpenMP threads
    spin against the other test processes and run ~3x slower.
    """
    import torch

    from ragcache.backends.local import load_model
    from ragcache.models import ensure_model

    torch.set_num_threads(1)
    path = ensure_model()
    load_model(path, "cpu", "float32")
    return path


@pytest.fixture(scope="session")
def small_rag(small_build: Path, local_model: Path) -> Iterator[Any]:
    """A RagCache over the small build with the local backend and its default prefix cache."""
    from ragcache.app import RagCache
    from ragcache.config import Config

    rag = RagCache.from_config(Config(corpus=small_build, build_dir=small_build))
    try:
        yield rag
    finally:
        rag.close()


# --- end local model ------------------------------------------------------------------------


# --- the Gemini API stand-in (tests/gemini_server.py; Google cannot be reached here) ---


@pytest.fixture(scope="session")
def gemini_server() -> Iterator[Any]:
    """A local server standing in for Google's Gemini API, once per session."""
    from gemini_server import GeminiServer

    server = GeminiServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gemini(gemini_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stand-in with no caches, no recorded requests and its clock at now; the key in the environment."""
    from gemini_server import API_KEY

    gemini_server.reset()
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    return gemini_server


# --- end Gemini stand-in --------------------------------------------------------------------


# --- a real Redis server (conversation.store: redis://…; setup.sh --test installs Debian's) ---


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis-server`` on a free loopback port, in memory only, once per session."""
    import shutil
    import socket
    import subprocess
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (bash scripts/setup.sh --test installs Debian's redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(workdir)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- end Redis ----------------------------------------------------------------------------------
