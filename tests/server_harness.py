"""Start the real REST server (``ragcache serve`` under uvicorn) for tests.

The server runs in its own process on a free loopback port, over a real
compiled ``corpora/small`` and the real local backend, with API keys on.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ragcache.bench.loadserver import RunningServer, launch

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "test-key-ragcache"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess(RunningServer):
    """A ``ragcache serve`` this test suite started (``process`` is set); ``base_url`` ends without a slash.

    The package's :class:`~ragcache.bench.loadserver.RunningServer` (stop, log tail) and its
    ``wait_ready`` are the one implementation; this adds what tests measure.
    """

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (from /proc), all threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_config(
    tmp: Path, build_dir: Path, extra: dict[str, dict[str, object]] | None = None, **backend: object
) -> Path:
    """The server's config; ``extra`` sections are merged over the defaults (e.g. ``{"router": {...}}``)."""
    config: dict[str, dict[str, object] | str] = {
        "corpus": str(ROOT / "corpora" / "small"),
        "build_dir": str(build_dir),
        "backend": {"kind": "local", "max_output_tokens": 32, **backend},
        "cache": {"warm_on_start": True, "keep_warm": False, "traffic_dir": str(tmp / "traffic")},
        "server": {"max_body_bytes": 1_000_000, "max_history_messages": 8},
    }
    for section, values in (extra or {}).items():
        config[section] = {**dict(config.get(section, {})), **values}  # type: ignore[arg-type]
    path = tmp / "server.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_server(
    tmp: Path, timeout_s: float = 600.0, extra: dict[str, dict[str, object]] | None = None, index: bool = False
) -> ServerProcess:
    """Build corpora/small into ``tmp`` (with its chunk index if ``index``), start the server, wait until ready."""
    from ragcache.corpus.compile import build_corpus

    build_dir = tmp / "build-small"
    steps = ()
    if index:
        from ragcache.config import RouterConfig
        from ragcache.router.index import index_step

        steps = (index_step(RouterConfig().embedding_model),)
    build_corpus(ROOT / "corpora" / "small", build_dir, steps=steps)
    config = write_config(tmp, build_dir, extra)
    port = free_port()
    log_path = tmp / "server.log"
    env = {**os.environ, "RAGCACHE_API_KEYS": f"other-key,{API_KEY}", "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = serve_command(config, port)
    return launch(cmd, port, API_KEY, log_path, env=env, cwd=tmp, timeout_s=timeout_s, server_type=ServerProcess)


def serve_command(config: Path, port: int) -> list[str]:
    """``ragcache serve`` with ``config`` on loopback ``port``, run by this interpreter."""
    return [sys.executable, "-m", "ragcache.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (Prometheus text format)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total
