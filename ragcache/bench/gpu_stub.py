"""A vLLM-shaped upstream that answers at once: ragcache's own per-request cost without a GPU (issue 25).

    python -m ragcache.bench.gpu_stub serve --model DIR --port P      # the upstream alone
    python -m ragcache.bench.gpu_stub run --root DIR --sessions 64 --turns 4 --repeat 3 [--py-spy F]
    python -m ragcache.bench.gpu_stub first --root DIR --workers 2     # a deployment's first requests

Under 64 concurrent chats on the H100 one ragcache worker spent 13.4 ms of CPU a request
(docs/bench/gpu/README.md §5). To see where, the engine must not be the bottleneck: this server
speaks the part of vLLM's API the ``vllm`` backend uses — ``/tokenize`` (the model folder's own
tokenizer and chat template, as vLLM renders them), streamed ``/v1/completions`` of token ids
with usage and ``prompt_tokens_details.cached_tokens`` (a prefix cache of 16-token blocks,
chained hashes like vLLM's), ``/v1/models``, ``/metrics`` (the block size), ``/health`` and
``/reset_prefix_cache`` — and answers ``max_tokens`` tokens of fixed text with no model at all.

``run`` starts it, one ragcache worker in front (``python -m ragcache.bench.gpu_load serve``)
and runs the load phase of :mod:`ragcache.bench.gpu_load` ``repeat`` times: the worker's CPU
milliseconds per request (from ``/proc``), throughput and TTFT through ragcache and raw, each
run and the median. ``--py-spy`` records the worker during the last run (``py-spy`` must be
installed: ``pip install py-spy``) and prints the functions with the most samples.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

__all__ = ["PrefixCache", "Setup", "create_app", "main", "parse_setup", "top_functions"]

BLOCK = 16
MAX_MODEL_LEN = 40960
ANSWER = " ok"  # one token of text per streamed chunk


class PrefixCache:
    """Which 16-token blocks of earlier prompts are cached (chained block hashes, no eviction)."""

    def __init__(self) -> None:
        self.blocks: set[bytes] = set()

    def cached_tokens(self, ids: Sequence[int]) -> int:
        """Tokens of ``ids`` whose whole blocks were seen before; the prompt's blocks are then remembered."""
        parent, hit, cached = b"", True, 0
        for start in range(0, len(ids) - len(ids) % BLOCK, BLOCK):
            parent = hashlib.blake2b(parent + json.dumps(ids[start : start + BLOCK]).encode(), digest_size=16).digest()
            if hit and parent in self.blocks:
                cached += BLOCK
            else:
                hit = False
                self.blocks.add(parent)
        return cached


def create_app(model: Path, served_name: str) -> Any:
    """The FastAPI app: vLLM's routes as the ``vllm`` backend and the load client call them."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    cache = PrefixCache()
    app = FastAPI()

    def ids_of(body: dict[str, Any]) -> list[int]:
        if "messages" in body:
            generation = bool(body.get("add_generation_prompt", True))
            return list(tokenizer.apply_chat_template(body["messages"], add_generation_prompt=generation,
                                                      tokenize=True, return_dict=False))  # fmt: skip
        prompt = body["prompt"]
        if isinstance(prompt, list):
            return [int(i) for i in prompt]
        return list(tokenizer.encode(prompt, add_special_tokens=bool(body.get("add_special_tokens", True))))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": served_name, "object": "model", "root": str(model),
                                          "max_model_len": MAX_MODEL_LEN}]}  # fmt: skip

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(f'vllm:cache_config_info{{block_size="{BLOCK}"}} 1.0\n')

    @app.post("/reset_prefix_cache")
    def reset() -> dict[str, str]:
        cache.blocks.clear()
        return {}

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        tokens = ids_of(await request.json())
        return {"count": len(tokens), "max_model_len": MAX_MODEL_LEN, "tokens": tokens}

    @app.post("/v1/completions")
    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> Any:
        body = await request.json()
        chat = request.url.path.endswith("/chat/completions")
        ids = ids_of(body if chat else {"prompt": body["prompt"]})
        n = int(body.get("max_tokens") or 16)
        usage = {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n,
                 "prompt_tokens_details": {"cached_tokens": cache.cached_tokens(ids)}}  # fmt: skip
        head = {"id": "cmpl-stub", "created": 0, "model": served_name}
        if not body.get("stream"):
            text = ANSWER * n
            choice = {"index": 0, "finish_reason": "length",
                      **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}  # fmt: skip
            return JSONResponse({**head, "object": "chat.completion" if chat else "text_completion",
                                 "choices": [choice], "usage": usage})  # fmt: skip
        kind = "chat.completion.chunk" if chat else "text_completion"

        def events() -> Iterator[str]:
            for i in range(n):
                piece = {"delta": {"content": ANSWER}} if chat else {"text": ANSWER}
                choice = {"index": 0, **piece, "finish_reason": "length" if i == n - 1 else None}
                yield f"data: {json.dumps({**head, 'object': kind, 'choices': [choice]})}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({**head, 'object': kind, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def top_functions(collapsed: str, limit: int = 40) -> list[tuple[str, float]]:
    """From py-spy's ``--format raw`` (collapsed stacks, ``frame;frame;… count``): each function's
    share of all samples where it is on the stack (inclusive), largest first."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] += int(count)
    return [(frame, round(n / total, 4)) for frame, n in inclusive.most_common(limit)] if total else []


@dataclass(frozen=True)
class Setup:
    """A variant of the worker side: how many workers, and what is added to their environment."""

    label: str
    workers: int
    env: dict[str, str]


def parse_setup(text: str) -> Setup:
    """``"2"`` or ``"2 RAYON_NUM_THREADS=16 OMP_NUM_THREADS=16"``: the worker count, then ``NAME=value``s."""
    count, *pairs = text.split()
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"setup {text!r}: begins with the number of workers (1 or more), e.g. '2 NAME=value'")
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"setup {text!r}: {pair!r} is not NAME=value")
        env[name] = value
    return Setup(" ".join(text.split()), int(count), env)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Stub upstream, every setup's workers at once, then ``repeat`` rounds of each setup's load phase in
    turn (so the machine's drift falls on every setup alike); py-spy on the first worker's last run.
    The first round is a ready worker's first traffic, as on the GPU machine: what a worker still
    does on its first requests (rather than before ``/readyz``) shows there."""
    from ragcache.bench.gpu import SERVED_NAME, Server
    from ragcache.bench.gpu_load import LOAD_CORPORA, fresh_dir, load_phase, open_rags, start_worker

    setups = [parse_setup(text) for text in args.setup or ["1"]]
    root, logs = Path(args.root), Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ragcache.bench.gpu_stub", "serve", "--model", str(root / "model"),
            "--port", str(args.port)]  # fmt: skip
    stub = Server(argv, f"http://127.0.0.1:{args.port}", logs / "stub.log")
    started: list[Server] = []
    runs: dict[str, list[dict[str, Any]]] = {setup.label: [] for setup in setups}
    errors: list[str] = []
    try:
        stub.wait_ready(timeout_s=120)
        workers: dict[str, list[Server]] = {}
        port = args.port + 1
        for i, setup in enumerate(setups):
            workers[setup.label] = []
            traffic = fresh_dir(logs / f"traffic-{i}")  # a deployment per setup: its own warm lock
            for _ in range(setup.workers):
                worker = start_worker(stub.url, root / "corpora", LOAD_CORPORA, port, logs,
                                      max_tokens=args.max_tokens, env=setup.env, traffic_dir=traffic)  # fmt: skip
                started.append(worker)
                workers[setup.label].append(worker)
                port += 1
        for worker in started:
            worker.wait_ready("/readyz", timeout_s=600)
        rags = open_rags(stub.url, root / "corpora", LOAD_CORPORA, args.max_tokens, SERVED_NAME)
        for i in range(args.repeat):
            for setup in setups:
                last = i == args.repeat - 1 and setup is setups[-1]
                spy = _py_spy(workers[setup.label][0].proc.pid, args.py_spy) if args.py_spy and last else None
                phase = load_phase([stub.url], workers[setup.label], rags, sessions=args.sessions, turns=args.turns,
                                   max_tokens=args.max_tokens)  # fmt: skip
                if spy is not None:
                    spy.send_signal(2)  # SIGINT: py-spy writes what it recorded
                    spy.wait(timeout=60)
                runs[setup.label].append(_row(phase))
                errors += phase["ragcache"]["error_samples"] + phase["raw"]["error_samples"]
        for rag in rags.values():
            rag.close()
    finally:
        for worker in started:
            worker.stop()
        stub.stop()
    out: dict[str, Any] = {"argv": sys.argv, "setups": {s.label: {"workers": s.workers, "env": s.env} for s in setups},
                           "runs": runs, "error_samples": sorted(set(errors))[:10],
                           "median": {label: _median(rows) for label, rows in runs.items()}}  # fmt: skip
    if args.py_spy:
        out["py_spy_top"] = top_functions(Path(args.py_spy).read_text())
    return out


def _median(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "worker_cpu_ms_per_request_each"}


def _py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "py-spy"  # installed beside this Python, else on PATH
    argv = [
        str(exe) if exe.exists() else "py-spy",
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--output",
        out,
        "--rate",
        "250",
        "--threads",
        "--gil",
    ]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the load starts
    return spy


def _row(phase: dict[str, Any]) -> dict[str, Any]:
    """One run's figures; the CPU is all of the setup's workers' per request served (each: its own share)."""
    mine, raw = phase["ragcache"], phase["raw"]
    each = [round(1000 * c * len(mine["worker_cpu_s"]) / max(mine["requests"], 1), 2) for c in mine["worker_cpu_s"]]
    return {"worker_cpu_ms_per_request": mine["worker_cpu_ms_per_request"], "worker_cpu_ms_per_request_each": each,
            "ragcache_rps": mine["throughput_rps"], "raw_rps": raw["throughput_rps"],
            "ragcache_ttft_p50_ms": mine["ttft_p50_ms"], "raw_ttft_p50_ms": raw["ttft_p50_ms"],
            "errors": mine["errors"] + raw["errors"], "cached_share_from_turn2": mine["cached_share_from_turn2"],
            "equal_prompts": phase["same_prompts"]["equal_prompt_tokens"]}  # fmt: skip


def first_requests(args: argparse.Namespace) -> dict[str, Any]:
    """One deployment of ``workers`` workers; once all are ready, ``passes`` passes of one chat per corpus
    to each worker in turn, one at a time: each worker's CPU milliseconds per request, pass by pass.
    The first pass is a ready worker's first traffic; what it does there beyond the later passes is
    work it left for its first requests (unloaded: no other request is running)."""
    import asyncio

    from ragcache.bench import chatload
    from ragcache.bench.gpu import Server
    from ragcache.bench.gpu_load import LOAD_CORPORA, fresh_dir, start_worker, worker_cpu_s

    root, logs = Path(args.root), Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ragcache.bench.gpu_stub", "serve", "--model", str(root / "model"),
            "--port", str(args.port)]  # fmt: skip
    stub = Server(argv, f"http://127.0.0.1:{args.port}", logs / "stub.log")
    traffic = fresh_dir(logs / "traffic-first")
    workers: list[Server] = []
    passes: list[list[float]] = []
    try:
        stub.wait_ready(timeout_s=120)
        for port in range(args.port + 1, args.port + 1 + args.workers):
            workers.append(start_worker(stub.url, root / "corpora", LOAD_CORPORA, port, logs,
                                        max_tokens=args.max_tokens, traffic_dir=traffic))  # fmt: skip
        for worker in workers:
            worker.wait_ready("/readyz", timeout_s=600)
        for n in range(args.passes):
            row = []
            for worker in workers:
                scripts = [chatload.ChatScript(1000 * n + i, corpus, (f"What about locking? (pass {n})",))
                           for i, corpus in enumerate(LOAD_CORPORA)]  # fmt: skip
                before = worker_cpu_s(worker.proc.pid)
                for script in scripts:  # one at a time
                    records, _ = asyncio.run(chatload.run_ragcache([worker.url], "none", [script],
                                                                   max_tokens=args.max_tokens))  # fmt: skip
                    if records[0].error:
                        raise RuntimeError(f"{worker.url}: {records[0].error}")
                row.append(round(1000 * (worker_cpu_s(worker.proc.pid) - before) / len(scripts), 1))
            passes.append(row)
    finally:
        for worker in workers:
            worker.stop()
        stub.stop()
    return {"argv": sys.argv, "workers": args.workers, "corpora": list(LOAD_CORPORA),
            "cpu_ms_per_request_by_pass": passes}  # fmt: skip


def _deployment(parser: argparse.ArgumentParser, logs: str, port: int) -> argparse.ArgumentParser:
    """The options every deployment of the stub and its workers takes."""
    parser.add_argument("--root", required=True, help="what `python -m ragcache.bench.gpu prepare` wrote")
    parser.add_argument("--logs", default=logs)
    parser.add_argument("--port", type=int, default=port, help="the stub's port; the workers take the next ones")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragcache.bench.gpu_stub", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="the upstream alone")
    serve.add_argument("--model", required=True, help="a folder with the tokenizer and chat template")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--served-name", default="llama-8b-random")
    go = _deployment(sub.add_parser("run", help="upstream, the setups' ragcache workers, the load phase `repeat` "
                                    "times each"), "/tmp/ragcache-stub-logs", 8300)  # fmt: skip
    go.add_argument("--sessions", type=int, default=64)
    go.add_argument("--turns", type=int, default=4)
    go.add_argument("--max-tokens", type=int, default=16)
    go.add_argument("--repeat", type=int, default=3, help="rounds; each runs every setup once, in order")
    go.add_argument("--setup", action="append", help="'N [NAME=value …]': N workers with that environment "
                    "(repeatable; default '1')")  # fmt: skip
    go.add_argument("--py-spy", default="", help="record the last setup's first worker in the last round here "
                    "(py-spy's raw format)")  # fmt: skip
    go.add_argument("--out", default="", help="write the JSON here too")
    first = _deployment(sub.add_parser("first", help="one deployment's first requests against its later ones "
                                       "(CPU per request)"), "/tmp/ragcache-stub-first", 8400)  # fmt: skip
    first.add_argument("--workers", type=int, default=2)
    first.add_argument("--passes", type=int, default=3)
    first.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    if args.command == "first":
        if args.workers < 1 or args.passes < 2:
            parser.error(f"first: needs --workers >= 1 and --passes >= 2 (the first and a later one), "
                         f"got {args.workers} and {args.passes}")  # fmt: skip
        print(json.dumps(first_requests(args), indent=1))
        return 0
    if args.command == "serve":
        import uvicorn

        uvicorn.run(create_app(Path(args.model), args.served_name), host="127.0.0.1", port=args.port,
                    log_level="warning")  # fmt: skip
        return 0
    for text in args.setup or []:
        try:
            parse_setup(text)
        except ValueError as exc:
            parser.error(f"--setup: {exc}")
    result = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "argv"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
