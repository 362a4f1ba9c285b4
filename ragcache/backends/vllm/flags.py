"""``vllm serve`` flags ragcache recommends beyond prefix caching: KV offloading to CPU memory and
KV-cache events for a router that indexes each replica's blocks (``ragcache vllm-command``; the GPU
bench starts its servers with them). Flag names as in vLLM's ``--help``; docs/deploy.md dates them."""

from __future__ import annotations

import json

__all__ = ["KV_EVENTS_BLOCK_SIZE", "KV_OFFLOADING_BACKENDS", "kv_events_args", "kv_offloading_args"]

KV_OFFLOADING_BACKENDS = ("native", "lmcache")
KV_EVENTS_BLOCK_SIZE = 64  # llm-d's precise prefix scorer hashes 64-token blocks by default (docs/deploy.md)


def kv_offloading_args(size_gib: float, backend: str = "native") -> list[str]:
    """vLLM's KV offloading to CPU memory: blocks evicted from the GPU are kept in ``size_gib`` GiB of
    host memory and loaded back on a prefix hit, so a prefix set larger than the GPU's KV stays cached
    (slower to read than GPU-resident, much faster than a prefill; docs/deploy.md)."""
    if backend not in KV_OFFLOADING_BACKENDS:
        raise ValueError(f"unknown KV offloading backend {backend!r}; valid: {', '.join(KV_OFFLOADING_BACKENDS)}")
    if not size_gib > 0:
        raise ValueError(f"the KV offloading size must be a positive number of GiB, got {size_gib}")
    return ["--kv-offloading-backend", backend, "--kv-offloading-size", f"{size_gib:g}"]


def kv_events_args(endpoint: str, topic: str, block_size: int = KV_EVENTS_BLOCK_SIZE) -> list[str]:
    """KV-cache events over ZMQ for a router that indexes each replica's blocks (llm-d's precise prefix
    scorer), with the ``--block-size`` the scorer must be configured with too."""
    if not endpoint.startswith(("tcp://", "ipc://")):
        raise ValueError(f"the KV events endpoint must be a ZMQ tcp:// or ipc:// address, got {endpoint!r}")
    if block_size <= 0 or block_size % 16:
        raise ValueError(f"the KV block size must be a positive multiple of 16 tokens, got {block_size}")
    events = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": endpoint, "topic": topic}
    return ["--kv-events-config", json.dumps(events, separators=(",", ":")), "--block-size", str(block_size)]
