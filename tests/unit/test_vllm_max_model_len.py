"""The vllm backend's context window from the server's ``/v1/models`` (pure parsing).

The payload is the shape a real vLLM 0.32 (CPU) server returned; the backend
reading it from a live server is tested in tests/integration/test_vllm_window.py.
"""

from __future__ import annotations

from ragcache.backends.vllm.backend import max_model_len_of

MODELS = {
    "object": "list",
    "data": [
        {"id": "other", "object": "model", "owned_by": "vllm", "max_model_len": 4096},
        {"id": "smollm2", "object": "model", "owned_by": "vllm", "root": "/models/x", "max_model_len": 40960},
    ],
}


def test_the_served_model_s_window_is_read() -> None:
    assert max_model_len_of(MODELS, "smollm2") == 40960


def test_an_unknown_name_falls_back_to_the_first_model() -> None:
    assert max_model_len_of(MODELS, "not-served") == 4096


def test_a_server_that_does_not_say_gives_none() -> None:
    assert max_model_len_of({"data": [{"id": "m"}]}, "m") is None
    assert max_model_len_of({"data": []}, "m") is None
    assert max_model_len_of({}, "m") is None
    assert max_model_len_of({"data": [{"id": "m", "max_model_len": "big"}]}, "m") is None


def test_a_server_that_is_down_is_asked_again_only_after_retry_down_s() -> None:
    """A refused connection (a loopback port with no listener) falls back to 8192 without hanging."""
    import socket

    from ragcache.backends.vllm.backend import VllmBackend
    from ragcache.config import BackendConfig, CacheConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    now = [0.0]
    config = BackendConfig(kind="vllm", base_url=f"http://127.0.0.1:{port}", options={"block_size": 16})
    backend = VllmBackend(config, CacheConfig(), clock=lambda: now[0])
    assert backend.capabilities.context_window == 8192
    assert backend.server_context_window() is None
    asked = backend._window_asked_at
    now[0] = 10.0
    _ = backend.capabilities
    assert backend._window_asked_at == asked  # not asked again within retry_down_s (30 s)
    now[0] = 31.0
    _ = backend.capabilities
    assert backend._window_asked_at == 31.0
