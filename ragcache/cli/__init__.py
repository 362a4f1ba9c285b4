"""The `ragcache` command line (typer + rich): the only package that imports them.

One module per concept: ``corpus`` (build, inspect, lint, model install), ``ask``
(ask, chat, demo), ``cache`` (warm, vllm-command), ``router`` (eval-router), ``chat_eval`` (eval-chat),
``bench`` (bench, make-workload, render, ttft) and ``serve`` below. This module
wires them into one app. Errors from :mod:`ragcache.errors` become a one-line
message and the error's exit code in :func:`ragcache.cli.output.handle_errors`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragcache.cli import ask, bench, cache, chat_eval, corpus, router
from ragcache.cli.options import BackendOpt, ConfigOpt
from ragcache.cli.output import handle_errors, quiet_libraries

__all__ = ["app", "main"]

app = typer.Typer(
    name="ragcache",
    help="Long-context RAG over a stable, cached corpus.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def serve(
    config: ConfigOpt = None,
    host: str | None = typer.Option(None, "--host", help="Bind address (default: server.host)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: server.port)."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="uvicorn worker processes (default: server.workers)."
    ),
    backend: BackendOpt = None,
    base_url: str | None = typer.Option(None, "--base-url", help="Override backend.base_url."),
    model: str | None = typer.Option(None, "--model", help="Override backend.model."),
    corpus: Annotated[
        list[Path] | None,
        typer.Option(
            "--corpus",
            help="Corpus folder (or build) to serve; repeat for several. Each one's model id is its corpus.yaml name.",
        ),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible REST endpoint, metrics and dashboard (a rebuild is picked up live)."""
    import os

    from ragcache.server import serve as run_server

    # Overrides travel as RAGCACHE_* variables so every uvicorn worker sees them.
    for name, value in {"KIND": backend, "BASE_URL": base_url, "MODEL": model}.items():
        if value is not None:
            os.environ[f"RAGCACHE_BACKEND__{name}"] = value
    run_server(str(config) if config is not None else None, host, port, workers, corpus or ())


for _module in (corpus, ask, bench, cache, router, chat_eval):
    _module.register(app)
app.command("serve")(handle_errors(serve))


def main() -> None:
    """Console-script entry point."""
    quiet_libraries()
    app()
