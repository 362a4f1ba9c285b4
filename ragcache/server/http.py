"""HTTP plumbing of the REST server: the OpenAI error shape, its handlers and two ASGI middlewares.

``BodyLimitMiddleware`` refuses bodies over ``server.max_body_bytes`` with 413
before any JSON parsing (declared ``Content-Length`` or counted while
reading a chunked body). ``MetricsMiddleware`` counts every response by route
template and status, so rejected requests show up in ``/metrics`` too.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragcache.errors import RagCacheError
from ragcache.server.metrics import ServerMetrics
from ragcache.server.openai_compat import InvalidChatRequest

__all__ = [
    "APIError",
    "BodyLimitMiddleware",
    "MetricsMiddleware",
    "error_response",
    "error_type",
    "install_error_handlers",
]

log = logging.getLogger("ragcache.server")

# A rejected body is read and dropped up to this size so the client sees the
# 413 instead of a reset connection; past it the connection is just closed.
_DRAIN_LIMIT = 64 * 1024 * 1024


class APIError(Exception):
    """An HTTP error raised by a route or dependency (the only place statuses are chosen)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def error_type(status: int) -> str:
    """The OpenAI ``error.type`` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    """``{"error": {"message", "type", "param", "code"}}`` with ``status``."""
    body = {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


class BodyLimitMiddleware:
    """413 for request bodies over ``max_bytes``; the body is replayed otherwise."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _drain(receive)
            await self._reject(scope, receive, send, f"request body is {declared} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _drain(receive)
                await self._reject(scope, receive, send, "request body is larger")
                return
            chunks.append(body)
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        response = error_response(
            413,
            f"{what}, over the limit of {self.max_bytes} bytes (server.max_body_bytes)",
            code="request_too_large",
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _drain(receive: Receive) -> None:
    drained = 0
    while drained <= _DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for http.disconnect

    return replay


class MetricsMiddleware:
    """Count responses by route template (bounded label set) and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: dict[str, Any] = {}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_http(path, status.get("code", 500))


# --- error handlers ---------------------------------------------------------


def install_error_handlers(app: FastAPI, metrics: ServerMetrics) -> None:
    """Map every error to the OpenAI shape: APIError, ragcache errors (their own status and code),
    invalid chat requests, validation errors (400 naming the parameter), unknown paths, the rest (500)."""

    def path_of(request: Request) -> str:
        route = request.scope.get("route")
        return getattr(route, "path", "unmatched")

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        metrics.observe_error(path_of(request), exc.code or str(exc.status))
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code)

    @app.exception_handler(RagCacheError)
    async def ragcache_error(request: Request, exc: RagCacheError) -> JSONResponse:
        metrics.observe_error(path_of(request), exc.code)
        return error_response(exc.http_status, str(exc), code=exc.code)

    @app.exception_handler(InvalidChatRequest)
    async def invalid_chat(request: Request, exc: InvalidChatRequest) -> JSONResponse:
        metrics.observe_error(path_of(request), exc.code)
        return error_response(400, str(exc), param=exc.param, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = _describe_validation(exc)
        metrics.observe_error(path_of(request), code)
        return error_response(400, message, param=param, code=code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), code=f"http_{exc.status_code}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        metrics.observe_error(path_of(request), "internal_error")
        return error_response(
            500, f"internal server error ({type(exc).__name__}); see the server log", code="internal_error"
        )


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None, str]:
    """One clear sentence for the first problem, naming the parameter."""
    errors = exc.errors()
    first = errors[0] if errors else {"type": "invalid", "loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return f"malformed JSON body: {first.get('ctx', {}).get('error', first.get('msg'))}", None, "invalid_json"
    if kind == "missing":
        return f"missing required parameter: '{param}'", param, "missing_parameter"
    if param is None:
        return f"the request body must be a JSON object ({first.get('msg')})", None, "invalid_body"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"invalid parameter '{param}': {first.get('msg')}{more}", param, "invalid_parameter"
