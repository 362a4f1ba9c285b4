"""The `ragcache` command line (typer + rich): the only package that imports them.

One module per concept: ``corpus`` (build, inspect, lint, model install), ``ask``
(ask, chat, demo), ``cache`` (warm, vllm-command), ``router`` (eval-router), ``chat_eval`` (eval-chat),
``bench`` (bench, make-workload, render, ttft) and ``serve`` below. This module
wires them into one app. Errors from :mod:`ragcache.errors` become a one-line
``error:`` message and the error's exit code in :func:`ragcache.cli.output.handle_errors`;
usage errors (a bad option) get the same prefix in :func:`main`. Help is click's plain
layout: full option names, no metavar on flags, and up to ``HELP_WIDTH`` columns on a wide
terminal so command summaries are not cut.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ragcache.cli import ask, bench, cache, chat_eval, corpus, router
from ragcache.cli.options import BackendOpt, ConfigOpt
from ragcache.cli.output import err_console, handle_errors, quiet_libraries

__all__ = ["EXIT_CODES", "HELP_WIDTH", "app", "main"]

HELP_WIDTH = 120  # click's default of 80 cut most command summaries even on a wide terminal

EXIT_CODES = """\b
Exit codes:
  0    success
  1    failure reported by the command (lint findings, a prefix that did not cache)
  2    usage or config error (bad option, config key, text)
  3    corpus error (missing, malformed, not built)
  4    model error (unknown or unloadable model)
  5    routing error (no route fits the window)
  6    backend error (engine or vendor API: auth, rate limit, context length, unavailable)
  7    serve: the port is already in use
  130  interrupted (Ctrl-C)
"""

app = typer.Typer(
    name="ragcache",
    help="Long-context RAG over a stable, cached corpus.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": HELP_WIDTH},  # subcommands' contexts inherit it
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
    """Console-script entry point: usage errors get the one ``error:`` prefix every error has."""
    import sys

    quiet_libraries()
    try:
        code = app(prog_name="ragcache", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]  # the help text itself
        else:
            err_console.print(f"[bold red]error:[/] {escape(exc.format_message())}")
            if ctx is not None:
                err_console.print(f"run '{escape(ctx.command_path)} --help' for the options")
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
