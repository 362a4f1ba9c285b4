"""Concurrent multi-turn chats against ragcache and against the engine behind it (issue 25).

The load phase of the GPU bench (:mod:`ragcache.bench.gpu_load`) runs N chat sessions at
once, each a few turns long, spread over several corpora (a corpus is a ``model`` of
``ragcache serve``, so sessions take different routes):

- **through ragcache**: the official ``openai`` SDK, streaming, against ``ragcache serve``
  (one or several workers; a session stays on worker ``session % workers``, as behind a sticky
  load balancer: without a shared conversation store another worker would re-derive its turns);
- **raw**: the very requests ragcache's ``vllm`` backend sent for the same turns (token ids on
  ``/v1/completions``), rebuilt in this process from the ragcache run's answers, encoded
  before the phase and streamed to vLLM with httpx (the SDK's per-item transform of a
  long token-id list would cost the client more than the server, see the ``vllm`` backend).

Both sides keep every session's turns in order and all sessions concurrent; a report gives
throughput, TTFT p50/p99, the cached share per turn and errors, and :func:`compare` the
targets (issue 25: throughput ≥ 0.95 of raw, TTFT p50 overhead ≤ 10 ms, 0 errors, cached
share from turn 2 ≥ 0.9).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

__all__ = [
    "ChatScript",
    "RawBody",
    "TurnRecord",
    "chat_scripts",
    "compare",
    "median_compare",
    "raw_bodies",
    "records_json",
    "round_orders",
    "run_ragcache",
    "run_raw",
    "same_prompts",
    "summarize",
]

TOPICS = ("transactions", "indexes", "NULL handling", "type affinity", "the WAL journal", "foreign keys",
          "JSON functions", "window functions", "the query planner", "temporary files", "locking",
          "ROWID tables", "prepared statements", "collations", "PRAGMA settings", "error codes")  # fmt: skip
FORMS = ("What does the documentation say about {}?", "And how does that interact with {}?",
         "Summarize what it recommends for {}.", "Which page covers {} best?")  # fmt: skip
TARGETS = {"throughput_ratio_min": 0.95, "ttft_p50_overhead_ms_max": 10.0, "errors_max": 0,
           "cached_share_from_turn2_min": 0.9}  # fmt: skip


@dataclass(frozen=True)
class ChatScript:
    """One session: the corpus it talks to and its questions, one per turn (seeded, distinct per session)."""

    index: int
    corpus: str
    questions: tuple[str, ...]


def chat_scripts(sessions: int, corpora: Sequence[str], turns: int, seed: int = 0) -> list[ChatScript]:
    """``sessions`` scripts, corpora in turn; each question names its session so no two prompts are equal."""
    if sessions < 1 or turns < 1 or not corpora:
        raise ValueError(f"need sessions >= 1, turns >= 1 and a corpus (got {sessions}, {turns}, {list(corpora)})")
    scripts = []
    for index in range(sessions):
        rng = random.Random(seed * 1_000_003 + index)
        topics = rng.sample(TOPICS, turns) if turns <= len(TOPICS) else rng.choices(TOPICS, k=turns)
        questions = tuple(f"{FORMS[t % len(FORMS)].format(topic)} (chat {index})" for t, topic in enumerate(topics))
        scripts.append(ChatScript(index, corpora[index % len(corpora)], questions))
    return scripts


@dataclass
class TurnRecord:
    """One request of a session: timings, usage, the answer (sent back as history) or the error."""

    session: int
    turn: int
    corpus: str
    ttft_s: float = 0.0
    latency_s: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    text: str = field(default="", repr=False)
    error: str | None = None


Ask = Callable[[ChatScript, int, list[dict[str, str]]], Awaitable[dict[str, Any]]]


async def _sessions(scripts: Sequence[ChatScript], ask: Ask) -> tuple[list[TurnRecord], float]:
    """Every session at once, each its turns in order (the answer goes back as history); (records, wall s)."""

    async def one(script: ChatScript) -> list[TurnRecord]:
        history: list[dict[str, str]] = []
        out = []
        for turn, question in enumerate(script.questions, 1):
            messages = [*history, {"role": "user", "content": question}]
            record = TurnRecord(script.index, turn, script.corpus)
            try:
                reply = await ask(script, turn, messages)
            except Exception as exc:  # counted, not raised: a load test reports its errors
                record.error = f"{type(exc).__name__}: {exc}"[:300]
                out.append(record)
                break
            for key, value in reply.items():
                setattr(record, key, value)
            out.append(record)
            history = [*messages, {"role": "assistant", "content": record.text}]
        return out

    started = time.perf_counter()
    nested = await asyncio.gather(*(one(s) for s in scripts))
    return [r for records in nested for r in records], time.perf_counter() - started


def _usage(usage: Mapping[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    return {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "cached_tokens": int(details.get("cached_tokens") or 0),
            "output_tokens": int(usage.get("completion_tokens") or 0)}  # fmt: skip


async def run_ragcache(
    urls: Sequence[str], api_key: str, scripts: Sequence[ChatScript], *, max_tokens: int, timeout_s: float = 600.0
) -> tuple[list[TurnRecord], float]:
    """The sessions through ``ragcache serve`` at ``urls`` (its roots), streamed with the openai SDK."""
    from openai import AsyncOpenAI

    limits = httpx.Limits(max_connections=4 * len(scripts) + 16, max_keepalive_connections=2 * len(scripts) + 8)
    clients = [AsyncOpenAI(base_url=u.rstrip("/") + "/v1", api_key=api_key, max_retries=0, timeout=timeout_s,
                           http_client=httpx.AsyncClient(limits=limits, timeout=timeout_s)) for u in urls]  # fmt: skip

    async def ask(script: ChatScript, turn: int, messages: list[dict[str, str]]) -> dict[str, Any]:
        client = clients[script.index % len(clients)]
        started = time.perf_counter()
        events = await client.chat.completions.create(
            model=script.corpus, messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        first, parts, usage = None, [], None
        async for chunk in events:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter()
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
        if usage is None:
            raise RuntimeError("the stream ended without a usage chunk")
        end = time.perf_counter()
        return {"ttft_s": (first or end) - started, "latency_s": end - started, "text": "".join(parts), **_usage(usage)}

    try:
        return await _sessions(scripts, ask)
    finally:
        for client in clients:
            await client.close()


@dataclass(frozen=True)
class RawBody:
    """One request as ragcache's backend sent it: path, encoded body and routing headers."""

    path: str
    body: bytes
    headers: dict[str, str]


def raw_bodies(
    rags: Mapping[str, Any], scripts: Sequence[ChatScript], records: Sequence[TurnRecord], *, max_tokens: int
) -> dict[tuple[int, int], RawBody]:
    """The body ragcache's backend sends for each answered turn, rebuilt here from the answers it got
    (``RagCache.plan_turn`` over the history as the client sent it), encoded once, before any timing."""
    from ragcache.backends.base import GenerationOptions
    from ragcache.prompt import Message

    options = GenerationOptions(max_tokens=max_tokens, temperature=0.0)
    answers = {(r.session, r.turn): r.text for r in records if r.error is None}
    bodies: dict[tuple[int, int], RawBody] = {}
    for script in scripts:
        rag, history = rags[script.corpus], []
        for turn, question in enumerate(script.questions, 1):
            if (script.index, turn) not in answers:
                break
            plan = rag.plan_turn(question, history=tuple(history), observe=False)
            request = rag.backend.request(rag.turn_prompt(plan), options)
            body = {**request.body, **(request.extra_body or {}), "stream": True,
                    "stream_options": {"include_usage": True}}  # fmt: skip
            path = "/v1/completions" if request.api == "completions" else "/v1/chat/completions"
            headers = {"Content-Type": "application/json", **(request.headers or {})}
            bodies[(script.index, turn)] = RawBody(path, json.dumps(body, separators=(",", ":")).encode(), headers)
            history += [Message("user", question), Message("assistant", answers[(script.index, turn)])]
    return bodies


async def run_raw(
    url: str, scripts: Sequence[ChatScript], bodies: Mapping[tuple[int, int], RawBody], *, timeout_s: float = 600.0
) -> tuple[list[TurnRecord], float]:
    """The same turns straight to vLLM at ``url``: each body as ragcache's backend sent it."""
    limits = httpx.Limits(max_connections=4 * len(scripts) + 16, max_keepalive_connections=2 * len(scripts) + 8)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as http:

        async def ask(script: ChatScript, turn: int, messages: list[dict[str, str]]) -> dict[str, Any]:
            raw = bodies.get((script.index, turn))
            if raw is None:
                raise KeyError(f"no ragcache body for session {script.index} turn {turn}")
            started = time.perf_counter()
            first, parts, usage = None, [], None
            async with http.stream("POST", raw.path, content=raw.body, headers=raw.headers) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        text = choice.get("text") or (choice.get("delta") or {}).get("content")
                        if text:
                            first = first or time.perf_counter()
                            parts.append(text)
            end = time.perf_counter()
            return {"ttft_s": (first or end) - started, "latency_s": end - started, "text": "".join(parts),
                    **_usage(usage)}  # fmt: skip

        return await _sessions(scripts, ask)


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _share(records: Sequence[TurnRecord]) -> float:
    prompt = sum(r.prompt_tokens for r in records)
    return round(sum(r.cached_tokens for r in records) / prompt, 4) if prompt else 0.0


def summarize(records: Sequence[TurnRecord], wall_s: float) -> dict[str, Any]:
    """Throughput, TTFT and latency percentiles, cached share per turn and from turn 2, errors."""
    ok = [r for r in records if r.error is None]
    ttft = [r.ttft_s for r in ok]
    turns = sorted({r.turn for r in ok})
    return {
        "requests": len(records),
        "errors": len(records) - len(ok),
        "error_samples": sorted({r.error for r in records if r.error})[:5],
        "wall_s": round(wall_s, 3),
        "throughput_rps": round(len(ok) / wall_s, 3) if wall_s else 0.0,
        "output_tokens_per_s": round(sum(r.output_tokens for r in ok) / wall_s, 1) if wall_s else 0.0,
        "ttft_p50_ms": round(1000 * _percentile(ttft, 50), 2),
        "ttft_p99_ms": round(1000 * _percentile(ttft, 99), 2),
        "latency_p50_ms": round(1000 * _percentile([r.latency_s for r in ok], 50), 2),
        "latency_p99_ms": round(1000 * _percentile([r.latency_s for r in ok], 99), 2),
        "prompt_tokens": sum(r.prompt_tokens for r in ok),
        "cached_share_by_turn": {str(t): _share([r for r in ok if r.turn == t]) for t in turns},
        "cached_share_from_turn2": _share([r for r in ok if r.turn >= 2]),
    }


def compare(ragcache: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """ragcache against raw on the issue's targets: each figure and whether it was met."""
    ratio = ragcache["throughput_rps"] / raw["throughput_rps"] if raw["throughput_rps"] else 0.0
    overhead = ragcache["ttft_p50_ms"] - raw["ttft_p50_ms"]
    return {
        "throughput_ratio": round(ratio, 4),
        "ttft_p50_overhead_ms": round(overhead, 2),
        "ttft_p99_overhead_ms": round(ragcache["ttft_p99_ms"] - raw["ttft_p99_ms"], 2),
        "met": {
            "throughput": ratio >= TARGETS["throughput_ratio_min"],
            "ttft_p50_overhead": overhead <= TARGETS["ttft_p50_overhead_ms_max"],
            "errors": ragcache["errors"] <= TARGETS["errors_max"] and raw["errors"] <= TARGETS["errors_max"],
            "cached_share_from_turn2": ragcache["cached_share_from_turn2"] >= TARGETS["cached_share_from_turn2_min"],
        },
        "targets": dict(TARGETS),
    }


def round_orders(rounds: int) -> list[tuple[str, str]]:
    """The sides of each round: ragcache first (the raw side replays its requests), then alternating,
    ragcache, raw, raw, ragcache, …, so a drift over the run (a warming machine, a neighbour's load)
    falls on both sides alike."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1 (got {rounds})")
    return [("ragcache", "raw") if r % 2 == 0 else ("raw", "ragcache") for r in range(rounds)]


def median_compare(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The median over rounds of each round's :func:`compare` (a round's ragcache against the raw run
    next to it), and the spread, so a report can say whether a difference is above the noise."""
    if not rounds:
        raise ValueError("no rounds to take the median of")
    out: dict[str, Any] = {"rounds": len(rounds)}
    for key in ("throughput_ratio", "ttft_p50_overhead_ms", "ttft_p99_overhead_ms"):
        values = [float(r[key]) for r in rounds]
        out[key] = round(statistics.median(values), 4)
        out[f"{key}_range"] = [round(min(values), 4), round(max(values), 4)]
    out["met"] = {
        "throughput": out["throughput_ratio"] >= TARGETS["throughput_ratio_min"],
        "ttft_p50_overhead": out["ttft_p50_overhead_ms"] <= TARGETS["ttft_p50_overhead_ms_max"],
    }
    return out


def same_prompts(ragcache: Sequence[TurnRecord], raw: Sequence[TurnRecord]) -> dict[str, int]:
    """How many turns had the same prompt length both ways (the raw bodies are ragcache's requests)."""
    mine = {(r.session, r.turn): r.prompt_tokens for r in ragcache if r.error is None}
    theirs = {(r.session, r.turn): r.prompt_tokens for r in raw if r.error is None}
    both = mine.keys() & theirs.keys()
    return {"turns": len(both), "equal_prompt_tokens": sum(mine[k] == theirs[k] for k in both)}


def records_json(records: Sequence[TurnRecord]) -> list[dict[str, Any]]:
    """Per-turn rows for the JSON report (answers left out: random weights say nothing)."""
    return [{k: v for k, v in asdict(r).items() if k != "text"} for r in records]
