"""The vllm backend takes its context window from the REAL server when the config sets none."""

from __future__ import annotations

import httpx
import pytest

from ragcache.backends.base import create_backend
from ragcache.config import BackendConfig, CacheConfig

pytestmark = pytest.mark.vllm


def test_context_window_is_the_server_s_max_model_len(vllm_server) -> None:
    served = httpx.get(f"{vllm_server.url}/v1/models", timeout=30).json()["data"][0]["max_model_len"]
    config = BackendConfig(kind="vllm", base_url=vllm_server.url, model="smollm2", max_retries=0)
    backend = create_backend(config, CacheConfig())
    try:
        assert backend.server_context_window() == served
        assert backend.capabilities.context_window == served
    finally:
        backend.close()


def test_a_configured_window_wins(vllm_server) -> None:
    config = BackendConfig(kind="vllm", base_url=vllm_server.url, model="smollm2", context_window=2048)
    backend = create_backend(config, CacheConfig())
    try:
        assert backend.capabilities.context_window == 2048
    finally:
        backend.close()
