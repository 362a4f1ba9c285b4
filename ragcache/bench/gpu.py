"""The GPU run (issue 15): a real vLLM on the GPU machine, driven through ragcache.

    python -m ragcache.bench.gpu prepare --root DIR      # here: derived corpora + model folder
    python -m ragcache.bench.gpu run --root DIR --out F  # there: start vLLM, run the phases, write JSON

``run`` starts vLLM as ``shared/vllm-gpu.md`` says (random 8B-shaped weights with
``--load-format dummy``, prefix caching, cached-token reporting), then runs the
phases of :mod:`ragcache.bench.gpu_phases`: ``main`` (cold vs cached TTFT through
``RagCache`` after the warmer, with the ``vllm`` backend's token-id prompts;
ragcache's overhead over the same token-id request sent raw; the chat path beside
it; cached tokens from usage and from ``/metrics``), ``keepwarm`` (a kept and an unkept
prefix under KV pressure) and ``router`` (two replicas behind ``vllm-router``,
affinity vs round-robin). The KV cache is limited with ``--num-gpu-blocks-override``
so eviction takes seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["Server", "main", "serve_vllm", "start_router"]

SERVED_NAME = "llama-8b-random"
MAX_MODEL_LEN = 40960


class Server:
    """A child process serving HTTP at ``url``; its output goes to ``log``."""

    def __init__(self, argv: list[str], url: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.argv, self.url, self.log = argv, url, log
        self._out = log.open("w")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, env=env or os.environ.copy())
        self.started = time.perf_counter()

    def wait_ready(self, path: str = "/health", timeout_s: float = 400.0) -> float:
        """Poll ``url+path`` until 200; seconds it took. Raise if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[:4]} exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.url + path, timeout=2.0).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"{self.url}{path} not ready after {timeout_s:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def vllm_argv(
    model: Path, port: int, *, gpu_util: float, blocks: int | None, max_len: int = MAX_MODEL_LEN, hash_algo: str = ""
) -> list[str]:
    """The recipe's server command (shared/vllm-gpu.md), on ``port``."""
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", SERVED_NAME, "--load-format", "dummy", "--enable-prefix-caching",
        "--enable-prompt-tokens-details", "--max-model-len", str(max_len), "--enforce-eager",
        "--gpu-memory-utilization", str(gpu_util), "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    if blocks:
        argv += ["--num-gpu-blocks-override", str(blocks)]
    if hash_algo:
        argv += ["--prefix-caching-hash-algo", hash_algo]
    return argv


@contextmanager
def serve_vllm(
    model: Path,
    port: int,
    logs: Path,
    *,
    gpu_util: float,
    blocks: int | None,
    max_len: int = MAX_MODEL_LEN,
    hash_algo: str = "",
) -> Iterator[Server]:
    """A vLLM server for the duration of the block (stopped after, whatever happens)."""
    env = {**os.environ, "VLLM_USE_FLASHINFER_SAMPLER": "0", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
    server = Server(vllm_argv(model, port, gpu_util=gpu_util, blocks=blocks, max_len=max_len, hash_algo=hash_algo), f"http://127.0.0.1:{port}",
                    logs / f"vllm-{port}.log", env)  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


def start_router(workers: Sequence[str], port: int, policy: str, logs: Path) -> Server:
    """``vllm-router`` (the Rust router from PyPI) in front of ``workers``."""
    argv = [sys.executable, "-m", "vllm_router.launch_router", "--host", "127.0.0.1", "--port", str(port),
            "--policy", policy, "--worker-urls", *workers]  # fmt: skip
    return Server(argv, f"http://127.0.0.1:{port}", logs / f"router-{policy}.log")


def environment() -> dict[str, Any]:
    """GPU, driver and package versions of this run."""
    info: dict[str, Any] = {"python": sys.version.split()[0]}
    try:
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        info["gpu"] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        info["gpu"] = f"unknown ({exc})"
    for name in ("vllm", "torch", "transformers", "vllm_router", "openai", "httpx"):
        try:
            from importlib.metadata import version

            info[name] = version(name.replace("_", "-"))
        except Exception:  # a missing package is a fact to report, not an error
            info[name] = None
    return info


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the servers each phase needs, run it, collect its numbers."""
    from ragcache.bench import gpu_phases as phases

    root, logs = Path(args.root), Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"environment": environment(), "argv": sys.argv, "phases": {}}
    model, corpora = root / "model", root / "corpora"
    wanted = args.phases.split(",")
    if {"main", "keepwarm"} & set(wanted):
        with serve_vllm(
            model, 8000, logs, gpu_util=args.gpu_util, blocks=args.blocks, hash_algo=args.hash_algo
        ) as server:
            result["server"] = {"argv": server.argv, "ready_s": round(server.wait_ready(), 1)}
            if "main" in wanted:
                result["phases"]["main"] = phases.main_phase(
                    server.url, corpora, args.questions, args.corpora.split(",")
                )
                _save(args.out, result)
            if "keepwarm" in wanted:
                result["phases"]["keepwarm"] = phases.keep_warm_phase(server.url, corpora, args.pressure)
                _save(args.out, result)
    if "router" in wanted:
        result["phases"]["router"] = run_router(model, corpora, logs, args)
        _save(args.out, result)
    if "local" in wanted:
        from ragcache.bench.gpu_local import local_phase

        result["phases"]["local"] = local_phase(model, corpora)
    return result


def run_router(model: Path, corpora: Path, logs: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Two replicas on one GPU (half its memory each) behind vllm-router, per policy."""
    from ragcache.bench import gpu_phases as phases

    with ExitStack() as stack:
        replicas = []
        for port in (8001, 8002):  # one after the other: each sizes its KV from what is free
            server = stack.enter_context(
                serve_vllm(
                    model,
                    port,
                    logs,
                    gpu_util=args.replica_util,
                    blocks=args.replica_blocks,
                    max_len=args.replica_max_len,
                )
            )
            server.wait_ready()
            replicas.append(server.url)
        out: dict[str, Any] = {"replicas": replicas}
        for i, policy in enumerate(("round_robin", "consistent_hash")):
            router = start_router(replicas, 8010 + i, policy, logs)
            try:
                router.wait_ready(path="/health", timeout_s=60)
                affinity = policy == "consistent_hash"
                out[policy] = phases.router_phase(
                    router.url, replicas, corpora, affinity=affinity, prompt_format=args.router_format
                )
            finally:
                router.stop()
        return out


def _save(path: str, result: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragcache.bench.gpu", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="derive and build the corpora, write the model folder (here)")
    prep.add_argument("--root", required=True)
    go = sub.add_parser("run", help="start vLLM on the GPU and run the phases (there)")
    go.add_argument("--root", required=True, help="what `prepare` wrote")
    go.add_argument("--out", required=True, help="the JSON result file")
    go.add_argument("--logs", default="/tmp/ragcache-gpu-logs")
    go.add_argument("--phases", default="main,keepwarm", help="comma list of main, keepwarm, router, local")
    go.add_argument("--questions", type=int, default=16)
    go.add_argument("--corpora", default="gpu-8k,gpu-32k", help="corpora of the main phase")
    go.add_argument("--hash-algo", default="", help="vLLM --prefix-caching-hash-algo (default: vLLM's, sha256)")
    go.add_argument("--pressure", type=int, default=40, help="8k-token requests of KV pressure")
    go.add_argument("--gpu-util", type=float, default=0.85)
    go.add_argument("--blocks", type=int, default=6144, help="--num-gpu-blocks-override (16-token blocks)")
    go.add_argument("--replica-util", type=float, default=0.42)
    go.add_argument("--replica-blocks", type=int, default=1536, help="KV per replica: less than the 4 prefixes")
    go.add_argument("--replica-max-len", type=int, default=16384)
    go.add_argument("--router-format", default="token_ids", choices=("token_ids", "chat"),
                    help="the vllm backend's prompt_format in the router phase")  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "prepare":
        from ragcache.bench.gpu_prepare import prepare

        print(json.dumps(prepare(Path(args.root)), indent=2))
        return 0
    result = run(args)
    _save(args.out, result)
    print(json.dumps(result, indent=2, sort_keys=True)[-6000:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
