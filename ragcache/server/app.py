"""The REST endpoint: an OpenAI-compatible chat API over cached corpora.

``create_app(config_or_ragcache)`` builds a FastAPI app; ``ragcache serve``
runs it with uvicorn. Routes are thin: they turn a request into a facade call
(:class:`ragcache.app.RagCache`) and its :class:`Answer` into a response. HTTP
statuses are decided here only, from ``ragcache.errors`` (each error class
carries ``http_status`` and ``code``), in the OpenAI error shape
``{"error": {"message", "type", "param", "code"}}``.

Scaling: answers depend on the request alone (chat clients send the history),
so any number of uvicorn workers or replicas can serve. The one exception is
``/v1/ask`` with a ``session_id``: its history lives in the worker process that
kept it, so multi-worker deployments should send history via chat completions.
Metrics are summed over workers through ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from ragcache.config import Config, load_config
from ragcache.errors import RagCacheError
from ragcache.server.dashboard import dashboard_data, render_dashboard
from ragcache.server.http import (
    APIError,
    BodyLimitMiddleware,
    MetricsMiddleware,
    error_response,
    install_error_handlers,
)
from ragcache.server.openai_compat import (
    ChatInputs,
    CompletionIds,
    chat_inputs,
    completion,
    completion_chunk,
    completion_usage,
    finish_reason,
    generation_options,
    jsonable,
    ragcache_info,
)
from ragcache.server.schemas import (
    AskRequest,
    AskResponse,
    ChatCompletion,
    ChatCompletionRequest,
    CorpusList,
    CorpusSummary,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from ragcache.server.state import WORKERS_ENV, ServerState, corpus_summary
from ragcache.server.stream import GenerationStream

__all__ = ["create_app", "create_app_from_env", "serve"]

log = logging.getLogger("ragcache.server")
CONFIG_ENV = "RAGCACHE_CONFIG"


# --- dependencies -----------------------------------------------------------


def get_state(request: Request) -> ServerState:
    return request.app.state.ragcache


State = Annotated[ServerState, Depends(get_state)]


def require_api_key(state: State, authorization: Annotated[str | None, Header()] = None) -> None:
    """``Authorization: Bearer <key>`` when keys are configured."""
    if not state.api_keys:
        return
    if not authorization:
        raise APIError(401, "missing API key: send the header 'Authorization: Bearer <key>'", code="missing_api_key")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    valid = any(hmac.compare_digest(token.encode(), key.encode()) for key in state.api_keys)
    if scheme.lower() != "bearer" or not valid:
        raise APIError(401, "invalid API key (check the 'Authorization: Bearer <key>' header)", code="invalid_api_key")


# --- generation helpers -----------------------------------------------------


async def _cancel_on_disconnect(request: Request, stream: GenerationStream) -> None:
    while not stream.finished:
        if await request.is_disconnected():
            stream.cancel()
            return
        await asyncio.sleep(0.2)


async def _first_item(request: Request, stream: GenerationStream) -> Any:
    """The first delta, so errors raised before any output become HTTP errors."""
    watcher = asyncio.create_task(_cancel_on_disconnect(request, stream))
    try:
        return await anext(stream)
    except StopAsyncIteration:
        raise APIError(499 if stream.cancelled else 502, "the generation ended without an answer") from None
    except BaseException:
        stream.cancel()
        raise
    finally:
        watcher.cancel()


async def _collect(request: Request, stream: GenerationStream) -> Any:
    """Run a generation to its Answer, stopping it if the client goes away."""
    first = await _first_item(request, stream)
    answer = None if isinstance(first, str) else first
    watcher = asyncio.create_task(_cancel_on_disconnect(request, stream))
    try:
        async for item in stream:
            if not isinstance(item, str):
                answer = item
    finally:
        watcher.cancel()
        stream.cancel()
    if answer is None:
        raise APIError(499 if stream.cancelled else 502, "the generation ended without an answer")
    return answer


async def _sse(state: ServerState, name: str, stream: GenerationStream, first: Any, req: ChatCompletionRequest):
    """SSE events of a streamed chat completion; cancelled with the request."""
    rag = state.rag(name)
    ids = CompletionIds.new(name, rag.corpus.fingerprint)
    answer = None
    try:
        yield completion_chunk(ids, role=True, content="")
        item = first
        while True:
            if isinstance(item, str):
                if item:
                    yield completion_chunk(ids, content=item)
            else:
                answer = item
            try:
                item = await anext(stream)
            except StopAsyncIteration:
                break
    except Exception as exc:  # headers are sent: the error becomes the last event
        yield _error_event(state, exc)
        return
    finally:
        stream.cancel()
    if answer is None:
        return
    saved = state.observe(name, answer)
    info = ragcache_info(name, rag.corpus.fingerprint, rag.backend.name, answer, saved)
    yield completion_chunk(ids, content="", finish=finish_reason(answer), info=info)
    if req.stream_options is not None and req.stream_options.include_usage:
        yield completion_chunk(ids, usage=completion_usage(answer.usage), empty=True)
    yield "data: [DONE]\n\n"


def _error_event(state: ServerState, exc: Exception) -> str:
    if isinstance(exc, RagCacheError):
        status, message, code = exc.http_status, str(exc), exc.code
    else:
        log.exception("generation failed mid-stream")
        status, message, code = (
            500,
            f"internal server error ({type(exc).__name__}); see the server log",
            "internal_error",
        )
    state.metrics.observe_error("/v1/chat/completions", code)
    return f"data: {error_response(status, message, code=code).body.decode()}\n\n"


# --- routes -----------------------------------------------------------------

v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses={400: {"model": ErrorResponse}})
probes = APIRouter()


@v1.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(req: ChatCompletionRequest, request: Request, state: State) -> Any:
    """OpenAI-compatible chat completion; ``model`` names a corpus."""
    rag = state.rag(req.model)
    inputs: ChatInputs = chat_inputs(req, state.settings.max_history_messages)
    options = generation_options(
        rag.config.backend,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop,
        seed=req.seed,
    )
    stream = state.start_generation(rag, inputs, options)
    if req.stream:
        first = await _first_item(request, stream)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            _sse(state, req.model, stream, first, req), media_type="text/event-stream", headers=headers
        )
    answer = await _collect(request, stream)
    saved = state.observe(req.model, answer)
    info = ragcache_info(req.model, rag.corpus.fingerprint, rag.backend.name, answer, saved)
    return completion(CompletionIds.new(req.model, rag.corpus.fingerprint), answer, info)


@v1.post("/ask", response_model=AskResponse)
async def ask(req: AskRequest, request: Request, state: State) -> AskResponse:
    """One question against a corpus; ``session_id`` keeps history in this worker."""
    name = req.corpus or state.default_corpus
    rag = state.rag(name)
    history = state.sessions.history(req.session_id) if req.session_id else ()
    inputs = ChatInputs(question=req.question, context=req.context, history=history)
    options = generation_options(rag.config.backend, max_tokens=req.max_tokens, temperature=req.temperature)
    answer = await _collect(request, state.start_generation(rag, inputs, options))
    if req.session_id:
        state.sessions.append(req.session_id, req.question, answer.text)
    saved = state.observe(name, answer)
    return AskResponse(
        answer=answer.text,
        corpus=name,
        model=answer.model or rag.backend.name,
        session_id=req.session_id,
        route=answer.route.to_dict() if answer.route is not None else {},
        sources=jsonable(list(answer.sources or ())),
        usage=answer.usage.to_dict(),
        cost_usd=answer.cost_usd,
        saved_usd=saved,
        ttft_s=answer.ttft_s,
        latency_s=answer.latency_s,
    )


@v1.get("/models", response_model=ModelList)
async def list_models(state: State) -> ModelList:
    """The corpora, as OpenAI models."""
    return ModelList(data=[ModelCard(id=name) for name in state.rags])


@v1.get("/corpora", response_model=CorpusList)
async def list_corpora(state: State) -> CorpusList:
    """Every served corpus with its manifest summary."""
    return CorpusList(data=[corpus_summary(rag, state.readiness.is_ready(name)) for name, rag in state.rags.items()])


@v1.get("/corpora/{name}", response_model=CorpusSummary)
async def get_corpus(name: str, state: State) -> CorpusSummary:
    """One corpus: blocks, categories, prefixes and readiness."""
    return corpus_summary(state.rag(name), state.readiness.is_ready(name))


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@probes.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    """Readiness: every configured prefix is warm (or warming is off)."""
    ready = state.readiness.all_ready()
    body = {"ready": ready, "corpora": state.readiness.report(), "warm": state.readiness.warm}
    return JSONResponse(body, status_code=200 if ready else 503)


@probes.get("/metrics")
async def metrics(state: State) -> Response:
    """Prometheus metrics, summed over workers in multiprocess mode."""
    body, content_type = state.metrics.exposition()
    return Response(body, media_type=content_type)


@probes.get("/dashboard.json")
async def dashboard_json(state: State) -> dict[str, Any]:
    """What the dashboard shows, as JSON."""
    return dashboard_data(state)


@probes.get("/", response_class=HTMLResponse)
async def dashboard(state: State) -> HTMLResponse:
    """The cache dashboard (self-contained HTML, no network)."""
    return HTMLResponse(render_dashboard(dashboard_data(state)))


# --- the app ----------------------------------------------------------------


def create_app(target: Config | Any | Sequence[Any] | None = None) -> FastAPI:
    """A FastAPI app over a Config (loads the RagCache), a RagCache, or several."""
    state = ServerState.create(target)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warming = asyncio.create_task(state.warm_all())
        try:
            yield
        finally:
            warming.cancel()
            await asyncio.to_thread(state.close)

    app = FastAPI(
        title="ragcache",
        summary="OpenAI-compatible chat over a stable, cached corpus",
        lifespan=lifespan,
    )
    app.state.ragcache = state
    app.include_router(v1)
    app.include_router(probes)
    install_error_handlers(app, state.metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=state.settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving: config from ``$RAGCACHE_CONFIG``."""
    path = os.environ.get(CONFIG_ENV) or None
    return create_app(load_config(path))


def serve(config_path: str | None, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the server with uvicorn (several workers share metrics through files)."""
    import shutil
    import tempfile

    import uvicorn

    config = load_config(config_path)
    host = host or config.server.host
    port = port or config.server.port
    workers = workers or config.server.workers
    if workers == 1:
        uvicorn.run(create_app(config), host=host, port=port, log_level="info")
        return
    os.environ[WORKERS_ENV] = str(workers)
    if config_path is not None:
        os.environ[CONFIG_ENV] = str(config.source)
    created = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        created = tempfile.mkdtemp(prefix="ragcache-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    try:
        uvicorn.run(
            "ragcache.server.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
        )
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
