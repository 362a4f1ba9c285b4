"""The REST endpoint: an OpenAI-compatible chat API over cached corpora.

``create_app(config_or_ragcache)`` builds a FastAPI app; ``ragcache serve``
runs it with uvicorn. Routes are thin: they turn a request into a facade call
(:class:`ragcache.app.RagCache`) and its :class:`Answer` into a response. The
parts they call (``state.py``: corpora, warming, sessions, metrics) raise
``ragcache.errors``; ``errors.py`` maps every error to a status in the OpenAI
shape ``{"error": {"message", "type", "param", "code"}}``, in one place;
``stream.py`` owns streaming (thread bridge, disconnects, SSE).

Scaling: chat clients send the history, and each turn's prompt is derived from
the conversation's words alone, so any worker or replica can serve any turn with
the same bytes; ``conversation.store: redis://…`` shares the planned turns (and
``/v1/ask`` sessions) between workers so none re-derives them (docs/deploy.md).
Metrics are summed over workers through ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ragcache.app import Answer, RagCache
from ragcache.config import Config, load_config
from ragcache.server.corpora import ServeTarget, corpus_summary
from ragcache.server.dashboard import dashboard_data, render_dashboard
from ragcache.server.errors import ErrorReply, install_error_handlers
from ragcache.server.http import BodyLimitMiddleware, MetricsMiddleware
from ragcache.server.openai_compat import (
    ChatInputs,
    CompletionIds,
    chat_inputs,
    completion,
    generation_options,
    jsonable,
    ragcache_info,
)
from ragcache.server.redact import install_log_redaction
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
    RagcacheInfo,
    ReloadReply,
)
from ragcache.server.sessions import open_session, save_session
from ragcache.server.state import ServerState
from ragcache.server.stream import chat_events, collect, first_item, sse_response, start_generation
from ragcache.server.warming import WORKERS_ENV

__all__ = ["create_app", "create_app_from_env", "serve", "serve_target"]

CONFIG_ENV = "RAGCACHE_CONFIG"
CORPORA_ENV = "RAGCACHE_SERVE_CORPORA"
URL_ENV = "RAGCACHE_SERVE_URL"


# --- dependencies -----------------------------------------------------------


async def get_state(request: Request) -> ServerState:
    """The app's state (async, as every dependency here: a sync one costs a thread-pool hop per request)."""
    return request.app.state.ragcache


State = Annotated[ServerState, Depends(get_state)]


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def require_api_key(
    request: Request, state: State, authorization: Annotated[str | None, Header()] = None
) -> None:
    """``Authorization: Bearer <key>`` when keys are configured, then the caller's rate limit."""
    state.guard.admit(authorization, _client(request))


async def protect_metrics(
    request: Request, state: State, authorization: Annotated[str | None, Header()] = None
) -> None:
    """The key on ``/metrics`` and the dashboard when ``server.protect_metrics`` is on."""
    if state.settings.protect_metrics:
        state.guard.authenticate(authorization, _client(request))


# --- routes -----------------------------------------------------------------

v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses={400: {"model": ErrorResponse}})
probes = APIRouter()  # liveness and readiness: always open, like health checks
observability = APIRouter(dependencies=[Depends(protect_metrics)])
admin = APIRouter(dependencies=[Depends(require_api_key)])  # changes what is served: the key whenever keys are set


@v1.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(req: ChatCompletionRequest, request: Request, state: State) -> Any:
    """OpenAI-compatible chat completion; ``model`` names a corpus."""
    rag = state.corpora.get(req.model)
    inputs: ChatInputs = chat_inputs(req, state.settings.max_history_messages)
    options = generation_options(
        rag.config.backend,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop,
        seed=req.seed,
    )
    stream = start_generation(rag, inputs, options, state.metrics)
    ids = CompletionIds.new(req.model, rag.corpus.fingerprint)

    def finish(answer: Answer) -> RagcacheInfo:
        """Count the finished answer; its ``ragcache`` object (route, sources, cost, saving)."""
        state.observe(req.model, answer, rag)
        return ragcache_info(req.model, rag.corpus.fingerprint, rag.backend.name, answer)

    if req.stream:
        first = await first_item(request, stream)

        def on_error(reply: ErrorReply) -> None:
            state.metrics.observe_error("/v1/chat/completions", reply.code)

        include_usage = req.stream_options is not None and req.stream_options.include_usage
        return sse_response(
            chat_events(stream, first, ids, finish=finish, include_usage=include_usage, on_error=on_error)
        )
    answer = await collect(request, stream)
    return completion(ids, answer, finish(answer))


@v1.post("/ask", response_model=AskResponse)
async def ask(req: AskRequest, request: Request, state: State) -> AskResponse:
    """One question against a corpus; ``session_id`` continues a conversation the server keeps."""
    name = req.corpus or state.corpora.default
    rag = state.corpora.get(name)
    session_id, conversation = await asyncio.to_thread(open_session, rag, req.session_id, new=req.new_session)
    inputs = ChatInputs(question=req.question, context=req.context, conversation=conversation)
    options = generation_options(rag.config.backend, max_tokens=req.max_tokens, temperature=req.temperature)
    answer = await collect(request, start_generation(rag, inputs, options, state.metrics))
    if session_id and answer.conversation is not None:
        await asyncio.to_thread(save_session, rag, session_id, answer.conversation)
    state.observe(name, answer, rag)
    return AskResponse(
        answer=answer.text,
        corpus=name,
        model=answer.model or rag.backend.name,
        session_id=session_id,
        route=answer.route.to_dict() if answer.route is not None else {},
        sources=jsonable(list(answer.sources)),
        usage=answer.usage.to_dict(),
        cost_usd=answer.cost_usd,
        saved_usd=answer.saved_usd,
        ttft_s=answer.ttft_s,
        latency_s=answer.latency_s,
        conversation=answer.turn.to_dict() if answer.turn is not None else None,
    )


@v1.get("/models", response_model=ModelList)
async def list_models(state: State) -> ModelList:
    """The corpora, as OpenAI models."""
    return ModelList(data=[ModelCard(id=name) for name in state.corpora.names()])


@v1.get("/corpora", response_model=CorpusList)
async def list_corpora(state: State) -> CorpusList:
    """Every served corpus with its manifest summary."""
    return CorpusList(data=[corpus_summary(rag, state.warming.is_ready(name)) for name, rag in state.corpora.items()])


@v1.get("/corpora/{name}", response_model=CorpusSummary)
async def get_corpus(name: str, state: State) -> CorpusSummary:
    """One corpus: blocks, categories, prefixes and readiness."""
    return corpus_summary(state.corpora.get(name), state.warming.is_ready(name))


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@probes.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    """Readiness: every configured prefix is warm (or warming is off)."""
    ready = state.warming.all_ready()
    body = {
        "ready": ready,
        "corpora": state.warming.report(),
        "warm": state.warming.results,
        "warm_detail": dict(sorted(state.warming.detail.items())),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@admin.post("/admin/reload", response_model=ReloadReply)
async def reload_corpora(state: State) -> ReloadReply:
    """Load every corpus's build again now and swap in the rebuilt ones (as the poll and SIGHUP do)."""
    results = await state.reloader.reload_all()
    return ReloadReply(data=[r.to_dict() for r in results])


@observability.get("/metrics")
async def metrics(state: State) -> Response:
    """Prometheus metrics, summed over workers in multiprocess mode."""
    body, content_type = state.metrics.exposition()
    return Response(body, media_type=content_type)


@observability.get("/dashboard.json")
async def dashboard_json(state: State) -> dict[str, Any]:
    """What the dashboard shows, as JSON."""
    return dashboard_data(state)


@observability.get("/", response_class=HTMLResponse)
async def dashboard(state: State) -> HTMLResponse:
    """The cache dashboard (self-contained HTML, no network)."""
    return HTMLResponse(render_dashboard(dashboard_data(state)))


# --- the app ----------------------------------------------------------------


def create_app(target: ServeTarget = None, *, url: str | None = None) -> FastAPI:
    """A FastAPI app over a Config or its path (loads the RagCache), a RagCache, or several.

    ``url``: where it will listen, for the startup lines naming each corpus, its model id and the
    dashboard and metrics URLs."""
    install_log_redaction()
    state = ServerState.create(target)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.announce(url)
        tasks = [asyncio.create_task(state.start())]
        if state.reloader.poll_s > 0:
            tasks.append(asyncio.create_task(state.reloader.watch()))
        on_hangup = _reload_on_sighup(state)
        try:
            yield
        finally:
            on_hangup()
            for task in tasks:
                task.cancel()
            await asyncio.to_thread(state.close)

    app = FastAPI(
        title="ragcache",
        summary="OpenAI-compatible chat over a stable, cached corpus",
        lifespan=lifespan,
    )
    app.state.ragcache = state
    app.include_router(v1)
    app.include_router(probes)
    app.include_router(observability)
    app.include_router(admin)
    install_error_handlers(app, state.metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=state.settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app


def _reload_on_sighup(state: ServerState) -> Callable[[], None]:
    """Reload on SIGHUP where this loop can take signals (the main thread, not Windows); the undo."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[Any]] = set()

    def hangup() -> None:
        task = loop.create_task(state.reloader.reload_all())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, hangup)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        return lambda: None
    return lambda: loop.remove_signal_handler(signal.SIGHUP)


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving: config from ``$RAGCACHE_CONFIG``,
    corpora from ``$RAGCACHE_SERVE_CORPORA`` (``serve --corpus``, joined by the path separator)."""
    config = load_config(os.environ.get(CONFIG_ENV) or None)
    paths = [p for p in os.environ.get(CORPORA_ENV, "").split(os.pathsep) if p]
    return create_app(serve_target(config, paths), url=os.environ.get(URL_ENV) or None)


def serve_target(config: Config, corpora: Sequence[str | os.PathLike[str]] = ()) -> ServeTarget:
    """What ``serve`` serves: the config's corpus, or each of ``corpora`` (one model id per corpus, its
    ``name``) with the config's settings and one backend shared by all of them."""
    if not corpora:
        return config
    rags: list[RagCache] = []
    try:
        for path in corpora:
            shared = rags[0].backend if rags else None
            rags.append(RagCache.from_config(config, corpus=path, backend=shared))
    except Exception:
        if rags:
            rags[0].close()
        raise
    return rags


def serve(
    config_path: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    corpora: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Run the server with uvicorn (several workers share metrics through files)."""
    import shutil
    import tempfile

    import uvicorn

    config = load_config(config_path)
    host = host or config.server.host
    port = port or config.server.port
    workers = workers or config.server.workers
    url = f"http://{host}:{port}"
    check_port(host, port)  # before loading anything: uvicorn's own bind failure exits 3, the corpus-error code
    if workers == 1:
        app = create_app(serve_target(config, corpora), url=url)
        uvicorn.run(app, host=host, port=port, log_level="info", log_config=_log_config())
        return
    os.environ[WORKERS_ENV] = str(workers)
    os.environ[URL_ENV] = url
    os.environ[CORPORA_ENV] = os.pathsep.join(str(Path(p).resolve()) for p in corpora)
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
            log_config=_log_config(),
        )
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def check_port(host: str, port: int) -> None:
    """Fail with :class:`PortInUseError` when ``host:port`` cannot be bound (as uvicorn binds it)."""
    import errno
    import socket

    from ragcache.errors import ConfigError, PortInUseError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigError(f"server.host/port: cannot bind {host}:{port}: {exc.strerror or exc}") from exc
            raise PortInUseError(
                f"port {port} on {host} is already in use (another ragcache serve?); stop that process or pass "
                "--port (or set server.port)"
            ) from exc


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus ragcache's own loggers (warm-up results, errors) on the same handler."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["ragcache"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
