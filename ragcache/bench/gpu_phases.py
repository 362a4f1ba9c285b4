"""The measurements of the GPU run (see :mod:`ragcache.bench.gpu`).

Every ragcache request goes through :class:`~ragcache.app.RagCache` and its ``vllm``
backend (created by ``create_backend`` from a config) with ``prompt_format:
token_ids``: the prompt goes to ``/v1/completions`` as token ids, the stable
prefix's ids learned once. The raw baseline sends the very body ragcache sends
(the same token ids, built beforehand, untimed) with httpx, so the difference is
what ragcache adds per request (routing, prompt assembly, the ``/tokenize`` of the
question's tail, the SDK). The chat path (messages to ``/v1/chat/completions``,
rendered and tokenized by the server per request) is measured beside it, through
the backend with ``prompt_format: chat`` and raw. TTFT is time to the first
content delta (or the end of a stream without one), with ``max_tokens=1`` for
all, so they are measured the same way.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from ragcache.app import RagCache
from ragcache.backends.base import CacheUsage, Generation, GenerationOptions, create_backend
from ragcache.backends.vllm.backend import read_prefix_cache_stats
from ragcache.cache.warmer import Warmer, policy_for
from ragcache.config import BackendConfig, CacheConfig, Config, RouterConfig

__all__ = ["keep_warm_phase", "main_phase", "open_rag", "raw_request", "router_phase", "wire_body"]

ONE_TOKEN = GenerationOptions(max_tokens=1, temperature=0.0)
TOPICS = ("transactions", "indexes", "NULL handling", "type affinity", "the WAL journal", "foreign keys",
          "JSON functions", "window functions", "the query planner", "temporary files", "locking",
          "ROWID tables", "prepared statements", "collations", "PRAGMA settings", "error codes")  # fmt: skip
FORMS = ("What does the documentation say about {}?", "Summarize how SQLite handles {}.",
         "Which pages describe {}, and what do they recommend?")  # fmt: skip


def questions(n: int, salt: str = "") -> list[str]:
    """``n`` distinct, deterministic questions (a different tail each)."""
    out = [f.format(t) for f in FORMS for t in TOPICS]
    return [q + salt for q in out[:n]]


def backend_config(url: str, prompt_format: str = "token_ids", **options: Any) -> BackendConfig:
    """The ``vllm`` backend at ``url`` (more ``backend.options`` as keywords); the window comes from the server."""
    from ragcache.bench.gpu import SERVED_NAME

    return BackendConfig(kind="vllm", model=SERVED_NAME, base_url=url, max_output_tokens=1, timeout_s=600,
                         max_retries=0, options={"prompt_format": prompt_format, **options})  # fmt: skip


def open_rag(url: str, corpus: Path, prompt_format: str = "token_ids", **options: Any) -> RagCache:
    """RagCache on the ``vllm`` backend at ``url`` (token-id prompts, the backend's default)."""
    backend = backend_config(url, prompt_format, **options)
    config = Config(corpus=corpus, backend=backend, router=RouterConfig(mode="auto"))
    return RagCache.from_config(config)


def raw_request(
    client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[float, dict[str, Any]]:
    """(TTFT, usage) of one streamed request sent with httpx alone: a chat body (``messages``)
    to ``/v1/chat/completions``, a token-id body (``prompt``) to ``/v1/completions``."""
    path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
    started = time.perf_counter()
    first, usage = None, {}
    payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", f"{url}{path}", json=payload, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            if first is None and any(_text(c) for c in chunk.get("choices") or []):
                first = time.perf_counter()
    return (first or time.perf_counter()) - started, usage


def _text(choice: dict[str, Any]) -> str | None:
    return (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")


def wire_body(rag: RagCache, question: str, salt: str | None = None) -> dict[str, Any]:
    """The body ragcache's backend sends for ``question`` (token ids, or messages if it fell back)."""
    request = rag.backend.request(rag.prompt_for(question), replace(ONE_TOKEN, cache_salt=salt))
    return {**request.body, **(request.extra_body or {})}


def chat_body(rag: RagCache, question: str, salt: str | None = None) -> dict[str, Any]:
    """The chat body for ``question``: the same messages, rendered and tokenized by the server."""
    body: dict[str, Any] = {"model": rag.backend.model, "messages": rag.prompt_for(question).messages(),
                            "max_completion_tokens": 1, "temperature": 0.0, "top_p": 1.0}  # fmt: skip
    if salt is not None:
        body["cache_salt"] = salt
    return body


def _usage(u: CacheUsage) -> dict[str, int]:
    return {"input": u.input_tokens, "cached": u.cached_tokens}


def _raw_usage(u: dict[str, Any]) -> dict[str, int]:
    details = u.get("prompt_tokens_details") or {}
    return {"input": int(u.get("prompt_tokens") or 0), "cached": int(details.get("cached_tokens") or 0)}


def _med(xs: list[float]) -> float:
    return round(statistics.median(xs), 4) if xs else float("nan")


def cold(rag: RagCache, client: httpx.Client, url: str, n: int) -> dict[str, Any]:
    """Cold TTFT: a fresh ``cache_salt`` per request makes every block a miss."""
    rag_t, raw_t, usage = [], [], []
    for i in range(n):
        salt = f"cold-{time.time_ns()}-{i}"
        answer = rag.ask(questions(1)[0], options=replace(ONE_TOKEN, cache_salt=salt))
        rag_t.append(answer.ttft_s)
        usage.append(_usage(answer.usage))
        t, _ = raw_request(client, url, wire_body(rag, questions(1)[0], salt=salt + "-raw"))
        raw_t.append(t)
    return {"ragcache_s": rag_t, "raw_s": raw_t, "ragcache_median_s": _med(rag_t), "raw_median_s": _med(raw_t),
            "usage": usage}  # fmt: skip


def warm(rag: RagCache) -> dict[str, Any]:
    """What ``ragcache warm`` does: every prefix the router can emit, sent and checked."""
    started = time.perf_counter()
    results = Warmer(rag.backend).warm(rag.prefixes())
    return {"seconds": round(time.perf_counter() - started, 3), "results": [r.to_dict() for r in results]}


def session(rag: RagCache, url: str, n: int) -> dict[str, Any]:
    """Questions through ragcache alone, with /metrics read around them (reconciliation)."""
    before = read_prefix_cache_stats(url)
    answers = [rag.ask(q, options=ONE_TOKEN) for q in questions(n, " (session)")]
    after = read_prefix_cache_stats(url)
    cached = sum(a.usage.cached_tokens for a in answers)
    prompt = sum(a.usage.input_tokens for a in answers)
    hits, queries = after.hits - before.hits, after.queries - before.queries
    first = answers[0].usage
    return {
        "first_question": {**_usage(first), "ratio": round(first.cached_ratio, 4), "ttft_s": answers[0].ttft_s},
        "ttft_s": [a.ttft_s for a in answers],
        "usage": {"cached": cached, "prompt": prompt, "ratio": round(cached / prompt, 4) if prompt else 0.0},
        "metrics": {"hits": hits, "queries": queries, "ratio": round(hits / queries, 4) if queries else 0.0},
        "reconciled": {"hits_minus_cached": hits - cached, "queries_minus_prompt": queries - prompt},
    }


def overhead(rag: RagCache, client: httpx.Client, url: str, n: int) -> dict[str, Any]:
    """Cached TTFT through ragcache vs the same body sent raw, interleaved (order alternates)."""
    rag_t, raw_t, diffs, prep = [], [], [], []
    for i, q in enumerate(questions(n, " (pair)")):

        def via_rag(q: str = q) -> float:
            return rag.ask(q, options=ONE_TOKEN).ttft_s

        body = wire_body(rag, q)  # built before, untimed: the raw client has its ids already

        def via_raw(body: dict[str, Any] = body) -> float:
            return raw_request(client, url, body)[0]

        t0 = time.perf_counter()
        rag.prompt_for(q)
        prep.append(time.perf_counter() - t0)
        a, b = (via_rag(), via_raw()) if i % 2 == 0 else tuple(reversed((via_raw(), via_rag())))
        rag_t.append(a)
        raw_t.append(b)
        diffs.append(a - b)
    return {"ragcache_s": rag_t, "raw_s": raw_t, "ragcache_median_s": _med(rag_t), "raw_median_s": _med(raw_t),
            "overhead_median_ms": round(1000 * statistics.median(diffs), 2),
            "prompt_for_median_ms": round(1000 * statistics.median(prep), 3)}  # fmt: skip


def chat_path(rag: RagCache, client: httpx.Client, url: str, n: int) -> dict[str, Any]:
    """The same cached prompts as chat messages (the server renders and tokenizes the whole
    prompt per request): through the backend with ``prompt_format: chat``, and raw."""
    backend = create_backend(backend_config(url, "chat"), CacheConfig())
    rag_t, raw_t, usage = [], [], []
    try:
        for q in questions(n, " (chat)"):
            final = [i for i in backend.stream(rag.prompt_for(q), ONE_TOKEN) if isinstance(i, Generation)][-1]
            rag_t.append(final.ttft_s)
            usage.append(_usage(final.usage))
            raw_t.append(raw_request(client, url, chat_body(rag, q + " raw"))[0])
    finally:
        backend.close()
    return {"ragcache_s": rag_t, "raw_s": raw_t, "ragcache_median_s": _med(rag_t), "raw_median_s": _med(raw_t),
            "usage": usage}  # fmt: skip


def main_phase(url: str, corpora: Path, n: int, names: list[str] | None = None) -> dict[str, Any]:
    """Per corpus (8k, 32k): cold, warm, a session, ragcache vs raw (token ids), the chat path."""
    out: dict[str, Any] = {}
    with httpx.Client(timeout=600) as client:
        for name in names or ["gpu-8k", "gpu-32k"]:
            rag = open_rag(url, corpora / name)
            try:
                caps = rag.backend.capabilities
                row: dict[str, Any] = {
                    "context_window": caps.context_window,
                    "block": caps.cache_block_tokens,
                    "route": rag.router.route("x").mode,
                    "corpus_tokens": rag.corpus.total_tokens,
                }
                row["prompt_format"] = "token_ids" if "prompt" in wire_body(rag, "x") else "chat (fell back)"
                row["cold"] = cold(rag, client, url, 3)  # the prefix's ids are learned above, once, untimed
                row["warm"] = warm(rag)
                row["session"] = session(rag, url, n)
                row["overhead"] = overhead(rag, client, url, n)
                row["chat"] = chat_path(rag, client, url, min(n, 8))
                row["cold_over_cached"] = round(
                    row["cold"]["ragcache_median_s"] / row["overhead"]["ragcache_median_s"], 2
                )
                row["chat_cold_over_cached"] = round(
                    row["cold"]["ragcache_median_s"] / row["chat"]["ragcache_median_s"], 2
                )
                out[name] = row
            finally:
                rag.close()
    return out


class MeteredBackend:
    """The backend as the warmer sees it, counting what keep-warm sends (everything else passes through)."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.calls: list[dict[str, float]] = []

    def warm(self, prompt: Any) -> CacheUsage:
        started = time.perf_counter()
        usage = self._backend.warm(prompt)
        self.calls.append({"s": time.perf_counter() - started, "input": usage.input_tokens,
                           "cached": usage.cached_tokens})  # fmt: skip
        return usage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def pressure(client: httpx.Client, url: str, model: str, count: int, tokens: int, seed: int = 0) -> dict[str, Any]:
    """``count`` requests of ``tokens`` random token ids each: unique prefixes that fill the KV cache."""
    rng = random.Random(seed)
    started, sent = time.perf_counter(), 0
    for _ in range(count):
        prompt = [rng.randrange(1000, 49000) for _ in range(tokens)]
        r = client.post(f"{url}/v1/completions", json={"model": model, "prompt": prompt, "max_tokens": 1})
        r.raise_for_status()
        sent += tokens
    return {"requests": count, "tokens": sent, "seconds": round(time.perf_counter() - started, 2)}


def keep_warm_phase(url: str, corpora: Path, count: int, tokens: int = 8192) -> dict[str, Any]:
    """A kept prefix (keep-warm on) and an unkept twin, both warm, then KV pressure."""
    kept, unkept = open_rag(url, corpora / "gpu-8k"), open_rag(url, corpora / "gpu-8k-b")
    metered = MeteredBackend(kept.backend)
    # vLLM has no TTL: ttl_s stands for "LRU may evict it within this" under this pressure (8k tokens
    # every ~0.25 s into ~98k tokens of KV). idle_factor keeps the kept prefix counted as busy
    # through the pressure, which sends it no question of its own. Prices: the vllm profile's.
    policy = replace(policy_for(kept.backend), ttl_s=1.5, margin_s=0.5, window_s=3600.0, idle_factor=1000.0)
    warmer = Warmer(metered, policy)  # type: ignore[arg-type]
    out: dict[str, Any] = {"policy": policy.__dict__}
    try:
        out["warm"] = {"kept": [r.to_dict() for r in warmer.warm(kept.prefixes())],
                       "unkept": [r.to_dict() for r in Warmer(unkept.backend).warm(unkept.prefixes())]}  # fmt: skip
        before = {"kept": [], "unkept": []}
        for q in questions(3, " (traffic)"):
            before["kept"].append(_usage(kept.ask(q, options=ONE_TOKEN).usage))
            warmer.record(kept.prompt_for(q))
            before["unkept"].append(_usage(unkept.ask(q, options=ONE_TOKEN).usage))
        out["before"] = before
        metered.calls.clear()
        stats0 = read_prefix_cache_stats(url)
        warmer.start(interval_s=0.1)
        with httpx.Client(timeout=600) as client:
            out["pressure"] = pressure(client, url, kept.backend.model, count, tokens)
        warmer.stop()
        stats1 = read_prefix_cache_stats(url)
        q = questions(1, " (after pressure)")[0]
        out["after"] = {"kept": _answer(kept, q), "unkept": _answer(unkept, q)}
        out["keep_warm_cost"] = _cost(metered.calls, out["pressure"], list(warmer.decisions))
        out["metrics_during"] = {"hits": stats1.hits - stats0.hits, "queries": stats1.queries - stats0.queries}
    finally:
        warmer.stop()
        kept.close()
        unkept.close()
    return out


def _answer(rag: RagCache, q: str) -> dict[str, Any]:
    a = rag.ask(q, options=ONE_TOKEN)
    return {**_usage(a.usage), "ratio": round(a.usage.cached_ratio, 4), "ttft_s": round(a.ttft_s, 4)}


def _cost(calls: list[dict[str, float]], load: dict[str, Any], decisions: list[Any]) -> dict[str, Any]:
    sent = sum(int(c["input"]) for c in calls)
    uncached = sum(int(c["input"] - c["cached"]) for c in calls)
    return {
        "refreshes": len(calls),
        "decisions": {a: sum(d.action == a for d in decisions) for a in ("refresh", "lapse")},
        "prompt_tokens": sent,
        "uncached_tokens": uncached,
        "gpu_seconds": round(sum(c["s"] for c in calls), 3),
        "share_of_pressure_tokens": round(sent / load["tokens"], 4) if load["tokens"] else None,
        "uncached_share_of_pressure_tokens": round(uncached / load["tokens"], 5) if load["tokens"] else None,
    }


def router_phase(
    router_url: str, replicas: list[str], corpora: Path, *, affinity: bool, prompt_format: str = "token_ids"
) -> dict[str, Any]:
    """Questions over four prefixes, in a shuffled (seeded) order, through ragcache's own ``vllm``
    backend in router mode (``options.router: true``, the router's one URL).

    With affinity the backend itself sends the prefix's key as ``X-Session-ID`` (the header
    vllm-router's consistent hashing reads); for round-robin it sends none
    (``affinity_header: null``). Each policy gets its own ``cache_salt`` so it starts cold and
    cannot reuse the other's KV; the order is shuffled so round-robin does not pin a prefix to a
    replica by accident.
    """
    header = "X-Session-ID" if affinity else None
    names = ("gpu-8k", "gpu-8k-b", "gpu-8k-c", "gpu-8k-d")
    rags = [open_rag(router_url, corpora / n, prompt_format, router=True, affinity_header=header) for n in names]
    work = [(q, rag) for q in questions(12, " (replicas)") for rag in rags]
    random.Random(0).shuffle(work)
    salted = replace(ONE_TOKEN, cache_salt="affinity" if affinity else "round-robin")
    before = {r: read_prefix_cache_stats(r) for r in replicas}
    ttft, cached, prompt = [], 0, 0
    for q, rag in work:
        answer = rag.ask(q, options=salted)
        ttft.append(answer.ttft_s)
        cached += answer.usage.cached_tokens
        prompt += answer.usage.input_tokens
    after = {r: read_prefix_cache_stats(r) for r in replicas}
    for rag in rags:
        rag.close()
    per = {
        r: {"hits": after[r].hits - before[r].hits, "queries": after[r].queries - before[r].queries} for r in replicas
    }
    return {"requests": len(ttft), "ttft_median_s": _med(ttft), "ttft_mean_s": round(statistics.mean(ttft), 4),
            "cached_ratio": round(cached / prompt, 4), "per_replica": per}  # fmt: skip
