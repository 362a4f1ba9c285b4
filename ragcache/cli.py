"""The `ragcache` command line (typer + rich).

Errors from :mod:`ragcache.errors` become a one-line message on stderr and the
error's exit code here, and only here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ragcache.errors import RagCacheError

app = typer.Typer(
    name="ragcache",
    help="Long-context RAG over a stable, cached corpus.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn ragcache errors into a clear message and a non-zero exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagCacheError as exc:
            message = f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}"
            err_console.print(message, highlight=False, soft_wrap=True)  # no wrapping inside file paths
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


# --- commands are defined below, one section per concept -------------------

# --- corpus: build, inspect, lint, model install (ragcache/corpus/commands.py) ---
from ragcache.corpus import commands as _corpus_commands  # noqa: E402

_corpus_commands.register(app, handle_errors)
# --- end corpus ------------------------------------------------------------------

# --- bench: replay workloads, compare strategies (ragcache/bench/commands.py) ----
from ragcache.bench import commands as _bench_commands  # noqa: E402

_bench_commands.register(app, handle_errors)
# --- end bench -------------------------------------------------------------------

# --- serve: the REST endpoint (ragcache/server.py) -------------------------------


@app.command()
@handle_errors
def serve(
    config: str | None = typer.Option(None, "--config", "-c", help="Config YAML (default: built-in defaults)."),
    host: str | None = typer.Option(None, "--host", help="Bind address (default: server.host)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: server.port)."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="uvicorn worker processes (default: server.workers)."
    ),
) -> None:
    """Serve the OpenAI-compatible REST endpoint, metrics and dashboard."""
    from ragcache.server import serve as run_server

    run_server(config, host, port, workers)


# --- end serve -------------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
