"""Two ASGI middlewares of the REST server: a body-size limit and response counting.

``BodyLimitMiddleware`` refuses bodies over ``server.max_body_bytes`` with 413
before any JSON parsing. A declared ``Content-Length`` over the limit (or one
that is not a number: 20 digits, junk) is answered at once from the header,
with ``Connection: close``, reading nothing: a client that declares 5 GB and
sends 2 bytes must not hold the connection waiting for a drain. A chunked body
is counted while read; past the limit the rest is drained (bounded) so the
client sees the 413 rather than a reset. ``MetricsMiddleware`` counts every response by route
template and status, so rejected requests show up in ``/metrics`` too.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragcache.server.errors import error_response
from ragcache.server.metrics import ServerMetrics

__all__ = ["BodyLimitMiddleware", "MetricsMiddleware"]

# A rejected body is read and dropped up to this size so the client sees the
# 413 instead of a reset connection; past it the connection is just closed.
_DRAIN_LIMIT = 64 * 1024 * 1024


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
        if declared is not None and (declared < 0 or declared > self.max_bytes):
            # Answer from the header alone: draining would wait for bytes a hostile client never sends.
            what = f"request body is {declared} bytes" if declared >= 0 else "the Content-Length header is invalid"
            await self._reject(scope, receive, send, what, close=True)
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

    async def _reject(self, scope: Scope, receive: Receive, send: Send, what: str, *, close: bool = False) -> None:
        response = error_response(
            413,
            f"{what}, over the limit of {self.max_bytes} bytes (server.max_body_bytes)",
            code="request_too_large",
        )
        if close:  # the unread body must not be taken for the next request on this connection
            response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared body size; -1 for a header that is no usable size (junk, 19+ digits); None when absent."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() and len(text) <= 18 else -1
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
