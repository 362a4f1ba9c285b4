"""``ragcache vllm-command``: the router line in front of the replicas, KV offloading and KV events flags."""

from __future__ import annotations

import json
import shlex

import pytest

from ragcache.backends.vllm.flags import kv_events_args, kv_offloading_args
from ragcache.cli.cache import vllm_router_command, vllm_serve_command


def test_the_router_line_hashes_on_the_affinity_header_over_every_replica() -> None:
    argv = vllm_router_command(["http://127.0.0.1:8000", "http://127.0.0.1:8001"], port=9100)
    assert argv[0] == "vllm-router"
    assert argv[argv.index("--policy") + 1] == "consistent_hash"  # reads X-Session-ID, ragcache's default header
    assert argv[argv.index("--port") + 1] == "9100"
    assert argv[argv.index("--worker-urls") + 1 :] == ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]
    with pytest.raises(ValueError, match="at least one replica"):
        vllm_router_command([])


def test_kv_offloading_flags_are_vllms_native_cpu_offloading() -> None:
    argv = vllm_serve_command("m", "served", 8192, extra=kv_offloading_args(40))
    assert argv[argv.index("--kv-offloading-backend") + 1] == "native"
    assert argv[argv.index("--kv-offloading-size") + 1] == "40"  # GiB of CPU memory
    assert kv_offloading_args(2.5, "lmcache") == ["--kv-offloading-backend", "lmcache", "--kv-offloading-size", "2.5"]
    with pytest.raises(ValueError, match="valid: native, lmcache"):
        kv_offloading_args(8, "disk")
    with pytest.raises(ValueError, match="positive number of GiB"):
        kv_offloading_args(0)


def test_kv_events_flags_publish_over_zmq_with_the_scorers_block_size() -> None:
    argv = kv_events_args("tcp://*:5557", "kv@10.0.0.7@served", block_size=64)
    config = json.loads(argv[argv.index("--kv-events-config") + 1])
    assert config == {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": "tcp://*:5557",
                      "topic": "kv@10.0.0.7@served"}  # fmt: skip
    assert argv[argv.index("--block-size") + 1] == "64"
    with pytest.raises(ValueError, match="ZMQ"):
        kv_events_args("localhost:5557", "t")
    with pytest.raises(ValueError, match="multiple of 16"):
        kv_events_args("tcp://*:5557", "t", block_size=40)


def test_the_cli_prints_the_offloading_and_events_flags_on_every_replica_line(small_build) -> None:
    from typer.testing import CliRunner

    from ragcache.cli import app

    args = ["vllm-command", "--config", "configs/vllm.yaml", "--corpus", str(small_build), "--replicas", "2",
            "--kv-offload-gib", "16", "--kv-events", "tcp://*:5557"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    serve_lines = [shlex.split(line) for line in result.stdout.splitlines() if line.startswith("vllm serve")]
    assert len(serve_lines) == 2
    for argv in serve_lines:
        assert argv[argv.index("--kv-offloading-size") + 1] == "16"
        assert json.loads(argv[argv.index("--kv-events-config") + 1])["publisher"] == "zmq"
        assert argv[argv.index("--block-size") + 1] == "64"
    bad = CliRunner().invoke(app, [*args[:5], "--kv-offload-gib", "-1"])
    assert bad.exit_code == 2 and "positive number of GiB" in bad.output
