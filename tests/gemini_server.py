"""A local HTTP server that stands in for Google's Gemini API in tests.

Google's API cannot be reached from the test machines, so this server
implements the parts ragcache uses, shaped as Google documents them
(ai.google.dev/api/caching, ai.google.dev/api/generate-content), and the real
``google-genai`` SDK talks to it through ``HttpOptions(base_url=...)``:

- the ``cachedContents`` resource: create (POST), get, list (``pageSize`` /
  ``pageToken`` / ``nextPageToken``), patch (only ``ttl`` / ``expireTime``) and
  delete; input-only fields (contents, systemInstruction, tools, ttl) are never
  echoed; expired caches disappear; a cache below the model's minimum is a 400;
- ``models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse`` with
  ``cachedContent``: ``usageMetadata.promptTokenCount`` includes
  ``cachedContentTokenCount``; a request naming a cache together with
  ``systemInstruction``, ``tools`` or ``toolConfig`` is a 400, an unknown or
  expired cache a 403, a cache of another model a 400; a repeated prefix of an
  uncached request counts as an implicit cache hit;
- ``models/{model}:countTokens``; a wrong ``x-goog-api-key`` is a 400
  ``API_KEY_INVALID``; queued faults answer the next request with any status.

Tokens are estimated as ``ceil(characters / 4)``. The clock can be moved
forward (:meth:`GeminiServer.advance`) so TTL tests need no sleeping.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

API_KEY = "test-gemini-key"
MIN_TOKENS = {"gemini-2.5-pro": 4096, "gemini-2.5-flash": 1024, "gemini-3-pro": 4096, "gemini-3-flash": 1024}


def tokens_of(value: Any) -> int:
    """Tokens of every ``text`` inside a Content / list of Contents."""
    if isinstance(value, dict):
        own = (len(value["text"]) + 3) // 4 if isinstance(value.get("text"), str) else 0
        return own + sum(tokens_of(v) for k, v in value.items() if k != "text")
    if isinstance(value, list):
        return sum(tokens_of(v) for v in value)
    return 0


def _min_tokens(model: str) -> int:
    matches = [name for name in MIN_TOKENS if model.startswith(name)]
    return MIN_TOKENS[max(matches, key=len)] if matches else 4096


def _error(code: int, message: str, status: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=code)


def _parse_duration(value: str) -> float:
    if not isinstance(value, str) or not value.endswith("s"):
        raise ValueError(f"invalid Duration {value!r}")
    return float(value[:-1])


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Cache:
    name: str
    model: str
    display_name: str | None
    system: dict[str, Any] | None
    contents: list[dict[str, Any]]
    tokens: int
    create_time: float
    update_time: float
    expire_time: float

    def public(self) -> dict[str, Any]:
        """The CachedContent resource as returned (output fields only)."""
        out: dict[str, Any] = {
            "name": self.name,
            "model": self.model,
            "createTime": _stamp(self.create_time),
            "updateTime": _stamp(self.update_time),
            "expireTime": _stamp(self.expire_time),
            "usageMetadata": {"totalTokenCount": self.tokens},
        }
        if self.display_name:
            out["displayName"] = self.display_name
        return out


@dataclass
class GeminiState:
    """Everything the stand-in remembers; tests read and adjust it directly."""

    api_key: str = API_KEY
    context_window: int = 1_048_576
    offset_s: float = 0.0
    caches: dict[str, Cache] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[tuple[int, str, str]] = field(default_factory=list)
    implicit: set[str] = field(default_factory=set)
    ids: Any = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.time() + self.offset_s

    def datetime_now(self) -> datetime:
        """The server's clock as an aware datetime (ragcache's cache registry takes it)."""
        return datetime.fromtimestamp(self.now(), UTC)

    def live(self) -> dict[str, Cache]:
        """Caches that have not expired (Google deletes the others)."""
        now = self.now()
        for name in [n for n, c in self.caches.items() if c.expire_time <= now]:
            del self.caches[name]
        return self.caches

    def bodies(self, action: str, method: str = "POST") -> list[dict[str, Any]]:
        """JSON bodies of the ``method`` requests whose path ends with ``action``."""
        return [r["body"] for r in self.requests if r["method"] == method and r["path"].endswith(action)]


def _expiry(body: dict[str, Any], now: float) -> float:
    if "ttl" in body and "expireTime" in body:
        raise ValueError("only one of ttl and expireTime may be set")
    if "expireTime" in body:
        return datetime.fromisoformat(body["expireTime"].replace("Z", "+00:00")).timestamp()
    return now + _parse_duration(body.get("ttl", "3600s"))


def _answer(body: dict[str, Any], model: str, prompt_tokens: int, cached: int) -> tuple[list[str], dict[str, Any]]:
    """A deterministic answer (in chunks) and its usageMetadata."""
    question = body["contents"][-1]["parts"][-1].get("text", "").strip().splitlines()[-1]
    words = f"Stand-in answer from {model} to: {question}".split()
    limit = int((body.get("generationConfig") or {}).get("maxOutputTokens") or 8192)
    finish = "MAX_TOKENS" if len(words) > limit else "STOP"
    words = words[:limit]
    chunks = [" ".join(words[i : i + 4]) + (" " if i + 4 < len(words) else "") for i in range(0, len(words), 4)]
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": len(words),
        "totalTokenCount": prompt_tokens + len(words),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        "finishReason": finish,
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    return chunks, usage


def create_app(state: GeminiState) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def gate(request: Request, call_next: Any) -> Response:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        with state.lock:
            state.requests.append({"method": request.method, "path": request.url.path,
                                   "query": dict(request.query_params), "body": body})  # fmt: skip
            key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
            if key != state.api_key:
                reason = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
                return _error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", reason)
            if state.faults:
                code, message, status = state.faults.pop(0)
                return _error(code, message, status)
        return await call_next(request)

    @app.post("/{version}/cachedContents")
    async def create_cache(request: Request) -> Response:
        body = await request.json()
        model = str(body.get("model", ""))
        if not model.startswith("models/"):
            return _error(400, "model is required, as models/{model}", "INVALID_ARGUMENT")
        fields = {"contents", "systemInstruction", "tools", "toolConfig", "displayName", "model", "ttl", "expireTime"}
        unknown = sorted(set(body) - fields)
        if unknown:
            return _error(400, f"Invalid JSON payload received. Unknown name {unknown[0]!r}", "INVALID_ARGUMENT")
        tokens = tokens_of(body.get("systemInstruction")) + tokens_of(body.get("contents", []))
        minimum = _min_tokens(model.removeprefix("models/"))
        if tokens < minimum:
            message = f"Cached content is too small. total_token_count={tokens}, min_total_token_count={minimum}"
            return _error(400, message, "INVALID_ARGUMENT")
        with state.lock:
            now = state.now()
            try:
                expire = _expiry(body, now)
            except ValueError as exc:
                return _error(400, str(exc), "INVALID_ARGUMENT")
            name = f"cachedContents/{next(state.ids):08d}stand"
            cache = Cache(name, model, body.get("displayName"), body.get("systemInstruction"),
                          body.get("contents", []), tokens, now, now, expire)  # fmt: skip
            state.caches[name] = cache
            return JSONResponse(cache.public())

    @app.get("/{version}/cachedContents")
    async def list_caches(pageSize: int = 50, pageToken: str | None = None) -> Response:
        with state.lock:
            items = sorted(state.live().values(), key=lambda c: c.name)
        start = int(pageToken or 0)
        size = max(1, min(pageSize, 1000))
        page = items[start : start + size]
        out: dict[str, Any] = {"cachedContents": [c.public() for c in page]} if page else {}
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return JSONResponse(out)

    def _find(cache_id: str) -> Cache | None:
        return state.live().get(f"cachedContents/{cache_id}")

    @app.get("/{version}/cachedContents/{cache_id}")
    async def get_cache(cache_id: str) -> Response:
        with state.lock:
            cache = _find(cache_id)
            if cache is None:
                return _error(403, "CachedContent not found (or permission denied)", "PERMISSION_DENIED")
            return JSONResponse(cache.public())

    @app.patch("/{version}/cachedContents/{cache_id}")
    async def patch_cache(cache_id: str, request: Request) -> Response:
        body = await request.json()
        if not body or set(body) - {"ttl", "expireTime"}:
            return _error(400, "only ttl or expireTime can be updated", "INVALID_ARGUMENT")
        with state.lock:
            cache = _find(cache_id)
            if cache is None:
                return _error(403, "CachedContent not found (or permission denied)", "PERMISSION_DENIED")
            try:
                cache.expire_time = _expiry(body, state.now())
            except ValueError as exc:
                return _error(400, str(exc), "INVALID_ARGUMENT")
            cache.update_time = state.now()
            return JSONResponse(cache.public())

    @app.delete("/{version}/cachedContents/{cache_id}")
    async def delete_cache(cache_id: str) -> Response:
        with state.lock:
            if _find(cache_id) is None:
                return _error(403, "CachedContent not found (or permission denied)", "PERMISSION_DENIED")
            del state.caches[f"cachedContents/{cache_id}"]
        return JSONResponse({})

    @app.post("/{version}/models/{model_action}")
    async def models(model_action: str, request: Request) -> Response:
        model, _, action = model_action.partition(":")
        body = await request.json()
        if action == "countTokens":
            return JSONResponse({"totalTokens": tokens_of(body.get("contents", []))})
        if action not in ("generateContent", "streamGenerateContent"):
            return _error(404, f"unknown method {action}", "NOT_FOUND")
        with state.lock:
            checked = _check_generate(state, model, body)
        if isinstance(checked, Response):
            return checked
        chunks, usage = _answer(body, model, *checked)
        finish = usage.pop("finishReason")
        if action == "generateContent":
            return JSONResponse(_response(model, "".join(chunks), finish, usage))
        return StreamingResponse(_sse(model, chunks, finish, usage), media_type="text/event-stream")

    return app


def _check_generate(state: GeminiState, model: str, body: dict[str, Any]) -> tuple[int, int] | Response:
    """Google's rejections, then (prompt tokens incl. cached, cached tokens)."""
    if not body.get("contents"):
        return _error(400, "* GenerateContentRequest.contents: contents is not specified", "INVALID_ARGUMENT")
    name = body.get("cachedContent")
    if name and any(k in body for k in ("systemInstruction", "tools", "toolConfig")):
        message = ("CachedContent can not be used with GenerateContent request setting system_instruction, "
                   "tools or tool_config.\n\nProposed fix: move those values to CachedContent from "
                   "GenerateContent request.")  # fmt: skip
        return _error(400, message, "INVALID_ARGUMENT")
    own = tokens_of(body.get("systemInstruction")) + tokens_of(body["contents"])
    cached = 0
    if name:
        cache = state.live().get(name)
        if cache is None:
            return _error(403, "CachedContent not found (or permission denied)", "PERMISSION_DENIED")
        if cache.model != f"models/{model}":
            message = (f"Model used by GenerateContent request (models/{model}) and CachedContent "
                       f"({cache.model}) has to be the same.")  # fmt: skip
            return _error(400, message, "INVALID_ARGUMENT")
        cached = cache.tokens
    else:
        prefix = [body.get("systemInstruction"), body["contents"][0]]
        size = tokens_of(prefix)
        key = hashlib.sha256(json.dumps([model, prefix], sort_keys=True).encode()).hexdigest()
        if key in state.implicit and size >= _min_tokens(model):
            cached = size  # implicit caching: the same leading content again
        state.implicit.add(key)
    total = own + cached
    if total > state.context_window:
        limit = state.context_window
        message = f"The input token count ({total}) exceeds the maximum number of tokens allowed ({limit})."
        return _error(400, message, "INVALID_ARGUMENT")
    return total, cached


def _response(model: str, text: str, finish: str | None, usage: dict[str, Any]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "stand-in"}


def _sse(model: str, chunks: list[str], finish: str, usage: dict[str, Any]) -> Any:
    for i, chunk in enumerate(chunks or [""]):
        last = i == len(chunks) - 1 or not chunks
        yield f"data: {json.dumps(_response(model, chunk, finish if last else None, usage))}\r\n\r\n"


class GeminiServer:
    """The stand-in served by uvicorn in a background thread of the test process."""

    def __init__(self) -> None:
        self.state = GeminiState()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        config = uvicorn.Config(create_app(self.state), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="gemini-stand-in", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GeminiServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the Gemini stand-in did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def reset(self) -> None:
        with self.state.lock:
            fresh = GeminiState()
            for name in ("api_key", "context_window", "offset_s", "caches", "requests", "faults", "implicit"):
                setattr(self.state, name, getattr(fresh, name))

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward (caches expire as if that time had passed)."""
        self.state.offset_s += seconds

    def expire_in(self, name: str) -> float:
        """Seconds the named cache has left (negative or missing: gone)."""
        with self.state.lock:
            cache = self.state.live().get(name)
            return cache.expire_time - self.state.now() if cache else -1.0

    def fail_next(self, code: int, message: str, status: str) -> None:
        self.state.faults.append((code, message, status))
