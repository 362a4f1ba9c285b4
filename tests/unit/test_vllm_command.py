"""``ragcache vllm-command --replicas N``: the router line in front of the replicas."""

from __future__ import annotations

import pytest

from ragcache.cli.cache import vllm_router_command


def test_the_router_line_hashes_on_the_affinity_header_over_every_replica() -> None:
    argv = vllm_router_command(["http://127.0.0.1:8000", "http://127.0.0.1:8001"], port=9100)
    assert argv[0] == "vllm-router"
    assert argv[argv.index("--policy") + 1] == "consistent_hash"  # reads X-Session-ID, ragcache's default header
    assert argv[argv.index("--port") + 1] == "9100"
    assert argv[argv.index("--worker-urls") + 1 :] == ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]
    with pytest.raises(ValueError, match="at least one replica"):
        vllm_router_command([])
