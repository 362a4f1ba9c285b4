"""The GPU run's load and offloading phases (issue 25); see :mod:`ragcache.bench.gpu` for the machine.

    python -m ragcache.bench.gpu_load run --root DIR --out F --phases load,offload,replicas
    python -m ragcache.bench.gpu_load serve --vllm URL --corpora DIR --names a,b --port P   # one worker

``load``: ``ragcache serve`` (the ``vllm`` backend, token-id prompts, several corpora) in front
of one vLLM; N concurrent multi-turn chats through it, then the same requests straight to vLLM
(:mod:`ragcache.bench.chatload`). vLLM's prefix cache is reset between the two and the corpus
prefixes warmed again, so each side starts from the same cache. The ragcache worker's CPU time
is read from ``/proc`` around its run (a worker at one core is the limit).

``replicas``: two ragcache workers in front of two vLLM replicas behind vllm-router (consistent
hashing on the backend's affinity header), the same comparison through the router.

``offload``: a KV cache capped at a third of the four 8k prefixes, the prefixes asked in turn,
without and with vLLM's native KV offloading to CPU memory; cached share and TTFT of each
request, and what the warmer reports for each prefix afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from ragcache.bench import chatload
from ragcache.bench.gpu import SERVED_NAME, Server, environment, start_router, vllm_argv

__all__ = ["load_phase", "main", "offload_phase", "serve_corpora", "worker_cpu_s"]

LOAD_CORPORA = ("gpu-8k", "gpu-8k-b", "gpu-8k-c", "gpu-8k-d", "gpu-32k")
OFFLOAD_CORPORA = ("gpu-8k", "gpu-8k-b", "gpu-8k-c", "gpu-8k-d")


def _config(url: str, corpus: Path, max_tokens: int, model: str, traffic_dir: str | None = None, **options: Any) -> Any:
    from ragcache.config import BackendConfig, CacheConfig, Config, RouterConfig

    options = {"prompt_format": "token_ids", **options}
    backend = BackendConfig(kind="vllm", model=model, base_url=url, max_output_tokens=max_tokens, timeout_s=600,
                            max_retries=0, options=options)  # fmt: skip
    cache = CacheConfig(keep_warm=False, traffic_dir=traffic_dir)
    return Config(corpus=corpus, backend=backend, router=RouterConfig(mode="auto"), cache=cache)


def open_rags(
    url: str,
    corpora: Path,
    names: Sequence[str],
    max_tokens: int,
    model: str = SERVED_NAME,
    traffic_dir: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """A RagCache per corpus on the ``vllm`` backend at ``url`` (token ids; ``router=True`` behind a router);
    ``traffic_dir``: where its workers keep traffic and the warm lock (one deployment, one folder)."""
    from ragcache.app import RagCache

    return {name: RagCache.from_config(_config(url, corpora / name, max_tokens, model, traffic_dir, **options))
            for name in names}  # fmt: skip


def serve_corpora(
    url: str,
    corpora: Path,
    names: Sequence[str],
    port: int,
    max_tokens: int,
    router: bool,
    model: str = SERVED_NAME,
    traffic_dir: str | None = None,
) -> None:
    """One ``ragcache serve`` worker over several corpora (each a ``model``), as ``serve`` runs it."""
    import uvicorn

    from ragcache.server.app import _log_config, create_app

    rags = open_rags(url, corpora, names, max_tokens, model, traffic_dir, **({"router": True} if router else {}))
    uvicorn.run(create_app(list(rags.values())), host="127.0.0.1", port=port, log_level="info",
                log_config=_log_config())  # fmt: skip


def start_worker(url: str, corpora: Path, names: Sequence[str], port: int, logs: Path, *, max_tokens: int,
                 router: bool = False, model: str = SERVED_NAME, env: dict[str, str] | None = None,
                 traffic_dir: Path | None = None) -> Server:  # fmt: skip
    """A ragcache worker process on ``port`` (the module's ``serve`` command), ``env`` added to this one's;
    the workers of one deployment share ``traffic_dir`` (one of them warms, the others prepare)."""
    argv = [sys.executable, "-m", "ragcache.bench.gpu_load", "serve", "--vllm", url, "--corpora", str(corpora),
            "--names", ",".join(names), "--port", str(port), "--max-tokens", str(max_tokens),
            "--model", model] + (["--traffic-dir", str(traffic_dir)] if traffic_dir else [])  # fmt: skip
    return Server(argv + (["--router"] if router else []), f"http://127.0.0.1:{port}", logs / f"ragcache-{port}.log",
                  {**os.environ, **(env or {})})  # fmt: skip


def fresh_dir(path: Path) -> Path:
    """``path`` emptied: each deployment of a run starts with no traffic and no one holding its warm lock."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def worker_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_prefix_cache(urls: Sequence[str]) -> dict[str, int]:
    """``POST /reset_prefix_cache`` on each vLLM (dev mode); the status each answered."""
    out = {}
    for url in urls:
        try:
            out[url] = httpx.post(
                f"{url}/reset_prefix_cache", params={"reset_external": "true"}, timeout=60
            ).status_code
        except httpx.HTTPError:
            out[url] = 0
    return out


def warm_all(rags: dict[str, Any]) -> dict[str, list[str]]:
    """Every corpus prefix warmed and checked (``ragcache warm``); the statuses."""
    from ragcache.cache.warmer import Warmer

    return {name: [r.status for r in Warmer(rag.backend).warm(rag.prefixes())] for name, rag in rags.items()}


def load_phase(
    vllm_urls: Sequence[str],
    workers: Sequence[Server],
    rags: dict[str, Any],
    *,
    sessions: int,
    turns: int,
    max_tokens: int,
    raw_url: str | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """N chats through the ragcache ``workers`` and the same requests raw (to ``raw_url``, default the
    first vLLM), ``rounds`` times in the order ragcache, raw, raw, ragcache, … (the raw bodies are the
    first round's): each round's figures, all rounds pooled, and the median of the rounds' differences."""
    scripts = chatload.chat_scripts(sessions, list(rags), turns)
    out: dict[str, Any] = {"sessions": sessions, "turns": turns, "max_tokens": max_tokens, "corpora": list(rags),
                           "workers": [w.url for w in workers], "rounds": rounds}  # fmt: skip
    target = raw_url or vllm_urls[0]
    mine: list[list[chatload.TurnRecord]] = []
    raw: list[list[chatload.TurnRecord]] = []
    walls: dict[str, list[float]] = {"ragcache": [], "raw": []}
    cpu: list[list[float]] = []
    bodies: dict[tuple[int, int], chatload.RawBody] | None = None
    for order in chatload.round_orders(rounds):
        for side in order:
            resets = reset_prefix_cache(vllm_urls)
            warms = warm_all(rags)
            out.setdefault(f"reset_before_{side}", resets)
            out.setdefault(f"warm_before_{side}", warms)
            if side == "ragcache":
                cpu0 = [worker_cpu_s(w.proc.pid) for w in workers]
                records, wall = asyncio.run(
                    chatload.run_ragcache([w.url for w in workers], "none", scripts, max_tokens=max_tokens)
                )
                cpu.append([round(worker_cpu_s(w.proc.pid) - c, 3) for w, c in zip(workers, cpu0, strict=True)])
                mine.append(records)
                if bodies is None:
                    started = time.perf_counter()
                    bodies = chatload.raw_bodies(rags, scripts, records, max_tokens=max_tokens)
                    out["raw_bodies_built_s"] = round(time.perf_counter() - started, 2)
            else:
                assert bodies is not None  # round_orders starts with ragcache
                records, wall = asyncio.run(chatload.run_raw(target, scripts, bodies))
                raw.append(records)
            walls[side].append(wall)
    out.update(_pooled(mine, raw, walls, cpu))
    return out


def _pooled(
    mine: list[list[chatload.TurnRecord]],
    raw: list[list[chatload.TurnRecord]],
    walls: dict[str, list[float]],
    cpu: list[list[float]],
) -> dict[str, Any]:
    """The load phase's report: every round, all rounds pooled, the median of the rounds' comparisons."""
    per_round = []
    for i, (records, theirs) in enumerate(zip(mine, raw, strict=True)):
        a, b = chatload.summarize(records, walls["ragcache"][i]), chatload.summarize(theirs, walls["raw"][i])
        per_round.append({"ragcache": a | {"worker_cpu_s": cpu[i]}, "raw": b, "compare": chatload.compare(a, b),
                          "same_prompts": chatload.same_prompts(records, theirs)})  # fmt: skip
    worker_cpu = [round(sum(c), 3) for c in zip(*cpu, strict=True)]
    wall = sum(walls["ragcache"])
    ragcache = chatload.summarize([r for rs in mine for r in rs], wall)
    per_request = round(1000 * sum(worker_cpu) / max(ragcache["requests"], 1), 2)  # all workers' CPU per request
    ragcache |= {"worker_cpu_s": worker_cpu, "worker_cpu_share_of_wall": [round(c / wall, 3) for c in worker_cpu],
                 "worker_cpu_ms_per_request": per_request}  # fmt: skip
    pooled_raw = chatload.summarize([r for rs in raw for r in rs], sum(walls["raw"]))
    return {
        "ragcache": ragcache,
        "raw": pooled_raw,
        "compare": chatload.compare(ragcache, pooled_raw),
        "compare_median_of_rounds": chatload.median_compare([r["compare"] for r in per_round]),
        "same_prompts": chatload.same_prompts(mine[0], raw[0]),
        "per_round": per_round,
        "turns_ragcache": chatload.records_json(mine[0]),
        "turns_raw": chatload.records_json(raw[0]),
    }


@contextmanager
def vllm(model: Path, port: int, logs: Path, *, gpu_util: float, blocks: int | None, max_len: int,
         extra: Sequence[str] = (), tag: str = "") -> Iterator[Server]:  # fmt: skip
    """The recipe's vLLM (dev mode: ``/reset_prefix_cache``) with ``extra`` flags, stopped after the block."""
    env = {**os.environ, "VLLM_USE_FLASHINFER_SAMPLER": "0", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1",
           "VLLM_SERVER_DEV_MODE": "1"}  # fmt: skip
    argv = vllm_argv(model, port, gpu_util=gpu_util, blocks=blocks, max_len=max_len) + list(extra)
    server = Server(argv, f"http://127.0.0.1:{port}", logs / f"vllm-{port}{tag}.log", env)
    try:
        yield server
    finally:
        server.stop()


def _metrics(url: str) -> dict[str, float]:
    """vLLM's prefix-cache counters (local and external, i.e. offloaded)."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("vllm:") and "prefix_cache" in line and "_total" in line and not line.startswith("#"):
            name, value = line.split("{")[0], float(line.rsplit(" ", 1)[1])
            out[name] = out.get(name, 0.0) + value
    return out


def offload_workload(url: str, rags: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Warm every prefix, then ``rounds`` of one new question per prefix in turn, one at a time."""
    from ragcache.backends.base import GenerationOptions

    one = GenerationOptions(max_tokens=1, temperature=0.0)
    out: dict[str, Any] = {"warm": warm_all(rags), "metrics_before": _metrics(url), "requests": []}
    for r in range(rounds):
        for name, rag in rags.items():
            answer = rag.ask(f"What does the documentation say about locking? (round {r})", options=one)
            usage = answer.usage
            out["requests"].append({"corpus": name, "round": r, "ttft_s": round(answer.ttft_s, 4),
                                    "prompt": usage.input_tokens, "cached": usage.cached_tokens})  # fmt: skip
    out["metrics_after"] = _metrics(url)
    out["warm_after"] = warm_all(rags)
    later = [q for q in out["requests"] if q["round"] > 0]  # round 0 follows the warm-up of the last prefix
    prompt = sum(q["prompt"] for q in later)
    out["summary"] = {"requests": len(later), "cached_share": round(sum(q["cached"] for q in later) / prompt, 4),
                      "ttft_median_s": round(statistics.median(q["ttft_s"] for q in later), 4)}  # fmt: skip
    return out


def offload_phase(model: Path, corpora: Path, logs: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The same workload on a capped KV cache without and with ``--kv-offloading-size``: both servers
    start at once on the one GPU (each its fixed number of blocks), then run one after the other."""
    from ragcache.backends.vllm.flags import kv_offloading_args

    out: dict[str, Any] = {"kv_tokens": args.offload_blocks * 16, "offload_gib": args.offload_gib}
    variants = (("without", 8000, []), ("with", 8001, kv_offloading_args(args.offload_gib)))
    with ExitStack() as stack:
        servers = {label: stack.enter_context(vllm(model, port, logs, gpu_util=0.42, blocks=args.offload_blocks,
                                                   max_len=args.offload_max_len, extra=extra, tag=f"-{label}"))
                   for label, port, extra in variants}  # fmt: skip
        ready = {label: server.wait_ready() for label, server in servers.items()}
        for label, server in servers.items():
            rags = open_rags(server.url, corpora, OFFLOAD_CORPORA, 1)
            try:
                row = offload_workload(server.url, rags, args.offload_rounds)
            finally:
                for rag in rags.values():
                    rag.close()
            out[label] = {"argv": server.argv, "ready_s": round(ready[label], 1),
                          "prefix_tokens": {n: r.corpus.total_tokens for n, r in rags.items()}, **row}  # fmt: skip
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start what each phase needs, run it, save after each."""
    root, logs = Path(args.root), Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    model, corpora = root / "model", root / "corpora"
    result: dict[str, Any] = {"environment": environment(), "argv": sys.argv, "phases": {}}
    wanted = args.phases.split(",")
    load = {"sessions": args.sessions, "turns": args.turns, "max_tokens": args.max_tokens, "rounds": args.rounds}
    if "load" in wanted:
        with vllm(model, 8000, logs, gpu_util=0.85, blocks=None, max_len=40960) as server:
            ready = server.wait_ready()
            rags = open_rags(server.url, corpora, LOAD_CORPORA, args.max_tokens)
            phase: dict[str, Any] = {"vllm": server.argv, "vllm_ready_s": round(ready, 1)}
            for i, count in enumerate(int(n) for n in args.load_workers.split(",")):  # one worker, then several
                with ExitStack() as stack:
                    workers, traffic = [], fresh_dir(logs / f"traffic-{count}w")
                    for port in range(8100 + 10 * i, 8100 + 10 * i + count):  # each run its own ports and logs
                        worker = start_worker(server.url, corpora, LOAD_CORPORA, port, logs, max_tokens=args.max_tokens,
                                              traffic_dir=traffic)  # fmt: skip
                        stack.callback(worker.stop)
                        workers.append(worker)
                    for worker in workers:
                        worker.wait_ready("/readyz", timeout_s=600)
                    phase[f"workers_{count}"] = load_phase([server.url], workers, rags, **load)
                result["phases"]["load"] = phase
                _save(args.out, result)
            for rag in rags.values():
                rag.close()
    if "offload" in wanted:
        result["phases"]["offload"] = offload_phase(model, corpora, logs, args)
        _save(args.out, result)
    if "replicas" in wanted:
        result["phases"]["replicas"] = run_replicas(model, corpora, logs, args, load)
        _save(args.out, result)
    return result


def run_replicas(model: Path, corpora: Path, logs: Path, args: argparse.Namespace, load: dict[str, Any]) -> dict:
    """Two vLLM replicas on the one GPU behind vllm-router, two ragcache workers in front."""
    names = LOAD_CORPORA[:4]  # the 8k corpora: the replicas' window is smaller
    with ExitStack() as stack:
        replicas = []
        for port in (8001, 8002):  # one after the other: each sizes its KV from what is free
            server = stack.enter_context(vllm(model, port, logs, gpu_util=0.42, blocks=None, max_len=16384))
            server.wait_ready()
            replicas.append(server.url)
        router = start_router(replicas, 8010, "consistent_hash", logs)
        stack.callback(router.stop)
        router.wait_ready(path="/health", timeout_s=60)
        traffic = fresh_dir(logs / "traffic-replicas")
        workers = [start_worker(router.url, corpora, names, port, logs, max_tokens=args.max_tokens, router=True,
                                traffic_dir=traffic) for port in (8101, 8102)]  # fmt: skip
        for worker in workers:
            stack.callback(worker.stop)
            worker.wait_ready("/readyz", timeout_s=600)
        rags = open_rags(router.url, corpora, names, args.max_tokens, router=True)
        return {"replicas": replicas, "router": router.url,
                **load_phase(replicas, workers, rags, raw_url=router.url, **load)}  # fmt: skip


def _save(path: str, result: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragcache.bench.gpu_load", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="start vLLM and ragcache on the GPU machine and run the phases")
    go.add_argument("--root", required=True, help="what `python -m ragcache.bench.gpu prepare` wrote")
    go.add_argument("--out", required=True)
    go.add_argument("--logs", default="/tmp/ragcache-gpu-logs")
    go.add_argument("--phases", default="load,offload", help="comma list of load, offload, replicas")
    go.add_argument("--sessions", type=int, default=64)
    go.add_argument("--turns", type=int, default=4)
    go.add_argument("--max-tokens", type=int, default=16)
    go.add_argument("--rounds", type=int, default=1, help="load rounds (ragcache, raw, raw, ragcache, …)")
    go.add_argument("--load-workers", default="1,2", help="ragcache workers of each load run (comma list)")
    go.add_argument("--offload-blocks", type=int, default=640, help="GPU KV blocks (16 tokens) in the offload phase")
    go.add_argument("--offload-max-len", type=int, default=10240)
    go.add_argument("--offload-gib", type=float, default=16.0)
    go.add_argument("--offload-rounds", type=int, default=4)
    serve = sub.add_parser("serve", help="one ragcache worker over several corpora (started by `run`)")
    serve.add_argument("--vllm", required=True)
    serve.add_argument("--corpora", required=True)
    serve.add_argument("--names", required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--max-tokens", type=int, default=16)
    serve.add_argument("--router", action="store_true")
    serve.add_argument("--model", default=SERVED_NAME, help="the served model name at --vllm")
    serve.add_argument("--traffic-dir", default=None, help="cache.traffic_dir (the deployment's warm lock)")
    args = parser.parse_args(argv)
    if args.command == "run" and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.command == "run" and args.offload_rounds < 2:
        parser.error("--offload-rounds must be at least 2 (round 0 only follows the warm-up)")
    if args.command == "serve":
        names = args.names.split(",")
        serve_corpora(args.vllm, Path(args.corpora), names, args.port, args.max_tokens, args.router, args.model,
                      args.traffic_dir)  # fmt: skip
        return 0
    result = run(args)
    _save(args.out, result)
    print(json.dumps(digest(result), indent=1, sort_keys=True))
    return 0


def digest(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of each phase without the per-turn rows (the log's summary)."""
    out: dict[str, Any] = {}
    for name, phase in result["phases"].items():
        if name in ("load", "replicas"):
            runs = {k: v for k, v in phase.items() if k.startswith("workers_")} or {"replicas": phase}
            keys = ("ragcache", "raw", "compare", "compare_median_of_rounds", "same_prompts")
            out[name] = {run: {k: v[k] for k in keys if k in v} for run, v in runs.items()}
        else:
            out[name] = {k: (v.get("summary"), v.get("warm_after")) for k, v in phase.items() if isinstance(v, dict)}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
