"""Load test: N concurrent multi-turn chat sessions through the official ``openai`` SDK.

``python -m ragcache.bench.load`` starts ``ragcache serve`` on loopback (or
uses ``--url``) and runs each session as a real client would: a system message,
then ``--turns`` questions, sending back the history with its own answers.
Half the sessions stream. It reports latency p50/p95/p99, throughput, errors
and the cached-token ratio (overall and from turn 2 on), and checks that no
answer or history was mixed up between sessions:

- every session has a seeded code (its marker) in its system message and is
  asked to repeat it: an answer holding another session's code is mixed up;
- sessions come in **twins** with identical messages: greedy answers of twins
  must be equal, so a row swapped in a decode batch shows as a twin mismatch
  even when the small model does not repeat its code;
- from turn 2 on, the cached tokens must cover the session's own previous
  prompt (less ``--history-slack`` tokens): its history was reused, not another's;
- ``--reference K`` re-asks K answered turns alone afterwards: same answer.

``--compare-serial`` first runs the same number of (other) sessions one at a
time, on the same server, and reports the speed-up of concurrent serving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ragcache.bench.loadreport import LoadReport, SessionScript, TurnResult, check, echo_rate, summarize
from ragcache.bench.loadserver import RunningServer, start_server

__all__ = ["LoadReport", "main", "make_sessions", "run_load"]

QUESTIONS = (
    "What is the session code? Answer with the code only.",
    "Repeat the session code.",
    "Say the session code once more.",
    "Spell out the session code.",
)


def make_sessions(count: int, seed: int, *, twins: bool = True) -> list[SessionScript]:
    """``count`` sessions; with ``twins``, sessions 2k and 2k+1 share their code and messages."""
    rng = random.Random(seed)
    codes: list[str] = []
    needed = (count + 1) // 2 if twins else count
    while len(codes) < needed:
        code = "".join(rng.choices(string.ascii_uppercase, k=3)) + "-" + "".join(rng.choices(string.digits, k=4))
        if code not in codes:
            codes.append(code)
    scripts = []
    for index in range(count):
        group = index // 2 if twins else index
        twin = (index ^ 1) if twins and (index ^ 1) < count else None
        scripts.append(SessionScript(index, codes[group], twin, stream=group % 2 == 1))
    return scripts


async def _ask(client: Any, model: str, messages: list[dict[str, str]], max_tokens: int, stream: bool) -> dict:
    """One chat completion: text, usage and timings (TTFT only when streaming)."""
    started = time.perf_counter()
    kwargs = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0}
    if not stream:
        reply = await client.chat.completions.create(**kwargs)
        usage = reply.usage
        return _reply(reply.choices[0].message.content or "", usage, started, None)
    events = await client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    parts: list[str] = []
    first, usage = None, None
    async for chunk in events:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    if usage is None:
        raise RuntimeError("the stream ended without a usage chunk")
    return _reply("".join(parts), usage, started, (first or time.perf_counter()) - started)


def _reply(text: str, usage: Any, started: float, ttft: float | None) -> dict:
    details = getattr(usage, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return {
        "text": text,
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": cached,
        "completion_tokens": usage.completion_tokens,
        "latency_s": time.perf_counter() - started,
        "ttft_s": ttft,
    }


async def _session(client: Any, model: str, script: SessionScript, turns: int, max_tokens: int) -> list[TurnResult]:
    messages = [{"role": "system", "content": script.system()}]
    results = []
    for turn in range(1, turns + 1):
        messages.append({"role": "user", "content": QUESTIONS[(turn - 1) % len(QUESTIONS)]})
        sent = [dict(m) for m in messages]
        try:
            reply = await _ask(client, model, messages, max_tokens, script.stream)
        except Exception as exc:  # counted, not raised: a load test reports errors
            results.append(TurnResult(script.index, turn, sent, error=f"{type(exc).__name__}: {exc}"[:300]))
            break
        results.append(TurnResult(script.index, turn, sent, **reply))
        messages.append({"role": "assistant", "content": reply["text"]})
    return results


async def _phase(client: Any, model: str, scripts: list[SessionScript], turns: int, max_tokens: int, limit: int):
    """All sessions, at most ``limit`` at once; (results, wall seconds)."""
    gate = asyncio.Semaphore(limit)

    async def gated(script: SessionScript) -> list[TurnResult]:
        async with gate:
            return await _session(client, model, script, turns, max_tokens)

    started = time.perf_counter()
    nested = await asyncio.gather(*(gated(s) for s in scripts))
    return [r for session in nested for r in session], time.perf_counter() - started


async def _references(client: Any, model: str, results: list[TurnResult], k: int, seed: int, max_tokens: int):
    """Re-ask ``k`` answered turns one at a time: (result, the answer alone) pairs."""
    answered = [r for r in results if r.error is None]
    picked = random.Random(seed).sample(answered, min(k, len(answered)))
    pairs = []
    for result in picked:
        reply = await _ask(client, model, result.messages, max_tokens, stream=False)
        pairs.append((result, reply["text"]))
    return pairs


async def run_load(server: RunningServer, args: argparse.Namespace) -> LoadReport:
    """The phases the arguments ask for, against ``server``."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0, timeout=args.timeout)
    try:
        model = args.model or (await client.models.list()).data[0].id
        serial, rounds, problems = None, [], []
        for number in range(args.rounds):  # each round: new sessions one at a time, then new ones concurrently
            seed = args.seed + 2 * number
            if args.compare_serial:
                scripts = make_sessions(args.sessions, seed + 1)
                serial = summarize(*await _phase(client, model, scripts, args.turns, args.max_tokens, 1))
            scripts = make_sessions(args.sessions, seed)
            results, wall = await _phase(client, model, scripts, args.turns, args.max_tokens, args.sessions)
            references = await _references(client, model, results, args.reference, seed, args.max_tokens)
            problems += check(scripts, results, references, history_slack=args.history_slack)
            if serial is not None:
                rounds.append((serial, summarize(results, wall)))
    finally:
        await client.close()
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"model": model}
    samples = [r.text for r in results[:4] if r.error is None]
    rounds = rounds if len(rounds) > 1 else []  # one round's speed-up is the serial/concurrent pair's
    return LoadReport(summarize(results, wall), serial, problems, settings, echo_rate(scripts, results), samples,
                      rounds)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ragcache.bench.load", description=__doc__.splitlines()[0])
    p.add_argument("--url", help="an existing server's root URL (default: start ragcache serve on loopback)")
    p.add_argument("--api-key", default="none", help="API key for --url")
    p.add_argument("--config", help="config for the started server (default: configs/default.yaml, local)")
    p.add_argument("--model", help="model name to send (default: the server's first)")
    p.add_argument("--sessions", type=int, default=16)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=12)
    p.add_argument("--max-batch", type=int, help="local backend: backend.options.max_batch of the started server")
    p.add_argument("--threads", type=int, help="local backend: torch threads of the started server")
    p.add_argument("--kv-dir", type=Path, help="local backend: persist the prefix KV here (later starts skip it)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--reference", type=int, default=8, help="turns re-asked alone afterwards (answers must match)")
    p.add_argument("--history-slack", type=int, default=16, help="tokens of the previous prompt that may miss")
    p.add_argument("--compare-serial", action="store_true", help="first run other sessions one at a time")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat (one at a time, then concurrent) with new sessions; the speed-up is the median round's",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="per-request timeout (s)")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--min-cached-ratio", type=float, help="fail below this cached-token ratio from turn 2 on")
    p.add_argument("--min-speedup", type=float, help="fail below this speed-up (with --compare-serial)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the load test; exit 1 on errors, mixed-up answers or a missed threshold."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    options = {k: v for k, v in {"max_batch": args.max_batch, "threads": args.threads}.items() if v}
    with tempfile.TemporaryDirectory(prefix="ragcache-load-") as tmp:
        if args.url:
            server = RunningServer(args.url.rstrip("/"), args.api_key)
        else:
            print(f"starting ragcache serve ({args.config or 'configs/default.yaml'}, {options or 'defaults'}) …")
            started = time.perf_counter()
            server = start_server(args.config, Path(tmp), local_options=options, kv_dir=args.kv_dir)
            print(f"server ready in {time.perf_counter() - started:.0f}s at {server.base_url}")
        try:
            report = asyncio.run(run_load(server, args))
        finally:
            server.stop()
    print(report.text())
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    failures = report.failures(args.min_cached_ratio, args.min_speedup)
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
