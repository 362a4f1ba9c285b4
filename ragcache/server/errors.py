"""Every error the server answers with, mapped in one place to OpenAI's shape.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

The server's parts raise domain errors (``ragcache.errors``); the HTTP layer
itself raises :class:`APIError` for what only it can detect (API keys, an
invalid chat request). :func:`describe` turns any exception into an
:class:`ErrorReply`; the exception handlers and the last event of a failed
stream both use it, so a status is chosen here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragcache.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigError,
    ContextLengthError,
    CorpusError,
    CorpusNotFoundError,
    InvalidTextError,
    ModelError,
    RagCacheError,
    RateLimitError,
    RoutingError,
    UnsupportedError,
)
from ragcache.server.metrics import ServerMetrics
from ragcache.server.redact import redact

__all__ = [
    "HTTP_STATUS",
    "APIError",
    "ClientDisconnected",
    "ErrorReply",
    "describe",
    "error_response",
    "error_type",
    "install_error_handlers",
]

log = logging.getLogger("ragcache.server")

# The status of each ragcache error; a subclass not listed takes its nearest listed base's.
HTTP_STATUS: dict[type[RagCacheError], int] = {
    RagCacheError: 500,
    ConfigError: 400,
    InvalidTextError: 400,
    CorpusError: 400,
    CorpusNotFoundError: 404,
    ModelError: 503,
    RoutingError: 400,
    BackendError: 502,
    AuthenticationError: 401,
    RateLimitError: 429,
    ContextLengthError: 400,
    BackendUnavailableError: 503,
    UnsupportedError: 501,
}
CLIENT_CLOSED = 499  # nginx's "client closed request": nobody reads it, the logs and metrics do


class APIError(Exception):
    """An error only the HTTP layer can detect (a missing API key, a malformed chat request)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


class ClientDisconnected(Exception):
    """The client went away before the answer was complete."""


@dataclass(frozen=True)
class ErrorReply:
    """One error as the API answers it (``headers``: e.g. ``Retry-After`` on a 429)."""

    status: int
    message: str
    code: str
    param: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": error_type(self.status), "param": self.param, "code": self.code}
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=dict(self.headers))


def error_type(status: int) -> str:
    """The OpenAI ``error.type`` for an HTTP status."""
    named = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}
    if status in named:
        return named[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def _status_of(exc: RagCacheError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]  # type: ignore[index]
    return 500


def describe(exc: BaseException) -> ErrorReply:
    """The reply for ``exc``: its status, message (secrets scrubbed), ``code`` and the parameter at fault."""
    reply = _describe(exc)
    return dataclasses.replace(reply, message=redact(reply.message))


def _describe(exc: BaseException) -> ErrorReply:
    if isinstance(exc, APIError):
        headers = tuple(sorted(exc.headers.items()))
        return ErrorReply(exc.status, exc.message, exc.code or f"http_{exc.status}", exc.param, headers)
    if isinstance(exc, CorpusNotFoundError):  # OpenAI clients name the corpus as ``model``
        return ErrorReply(404, str(exc), "model_not_found", "model")
    if isinstance(exc, InvalidTextError):
        return ErrorReply(400, str(exc), exc.code, exc.field)
    if isinstance(exc, RagCacheError):
        retry_after = getattr(exc, "retry_after", None)
        headers = (("Retry-After", str(max(1, math.ceil(retry_after)))),) if retry_after else ()
        return ErrorReply(_status_of(exc), str(exc), exc.code, None, headers)
    if isinstance(exc, RequestValidationError):
        message, param, code = _describe_validation(exc)
        return ErrorReply(400, message, code, param)
    if isinstance(exc, StarletteHTTPException):
        return ErrorReply(exc.status_code, str(exc.detail), f"http_{exc.status_code}")
    if isinstance(exc, ClientDisconnected):
        return ErrorReply(CLIENT_CLOSED, "the client closed the connection before the answer", "client_closed")
    log.error("unexpected %s", type(exc).__name__, exc_info=exc)
    return ErrorReply(500, f"internal server error ({type(exc).__name__}); see the server log", "internal_error")


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    """A reply the middlewares build directly (they run outside the exception handlers)."""
    return ErrorReply(status, message, code or f"http_{status}", param).response()


def install_error_handlers(app: FastAPI, metrics: ServerMetrics) -> None:
    """Answer every exception through :func:`describe`, counting it by route and code."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        reply = describe(exc)
        route = request.scope.get("route")
        metrics.observe_error(getattr(route, "path", "unmatched"), reply.code)
        return reply.response()

    for kind in (
        APIError,
        RagCacheError,
        RequestValidationError,
        StarletteHTTPException,
        ClientDisconnected,
        Exception,
    ):
        app.add_exception_handler(kind, handle)


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None, str]:
    """One clear sentence for the first problem, naming the parameter."""
    errors = exc.errors()
    first = errors[0] if errors else {"type": "invalid", "loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return f"malformed JSON body: {first.get('ctx', {}).get('error', first.get('msg'))}", None, "invalid_json"
    if kind == "invalid_text":  # ragcache/text.py, through the schemas' validators
        return f"invalid text in '{param}': {first.get('msg')}", param, "invalid_text"
    if kind == "missing":
        return f"missing required parameter: '{param}'", param, "missing_parameter"
    if param is None:
        return f"the request body must be a JSON object ({first.get('msg')})", None, "invalid_body"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"invalid parameter '{param}': {first.get('msg')}{more}", param, "invalid_parameter"
