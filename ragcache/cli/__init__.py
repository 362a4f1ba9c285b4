"""The `ragcache` command line (typer + rich).

Errors from :mod:`ragcache.errors` become a one-line message on stderr and the
error's exit code here, and only here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ragcache.errors import RagCacheError

if TYPE_CHECKING:
    pass

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

# --- answering: ask, chat, demo (ragcache/app_commands.py) -----------------------
from ragcache import app_commands as _app_commands  # noqa: E402

_app_commands.register(app, handle_errors)
# --- end answering ---------------------------------------------------------------

# --- bench: replay workloads, compare strategies (ragcache/bench/commands.py) ----
from ragcache.bench import commands as _bench_commands  # noqa: E402

_bench_commands.register(app, handle_errors)
# --- end bench -------------------------------------------------------------------

# --- caches: warm, vllm-command (ragcache/cache/commands.py) ---------------------
from ragcache.cache import commands as _cache_commands  # noqa: E402

_cache_commands.register(app, handle_errors)
# --- end caches ------------------------------------------------------------------

# --- router: eval-router (ragcache/router/commands.py) ---------------------------
from ragcache.router import commands as _router_commands  # noqa: E402

_router_commands.register(app, handle_errors)
# --- end router ------------------------------------------------------------------

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
    backend: str | None = typer.Option(None, "--backend", help="Override backend.kind (local, vllm, openai, …)."),
    base_url: str | None = typer.Option(None, "--base-url", help="Override backend.base_url."),
    model: str | None = typer.Option(None, "--model", help="Override backend.model."),
) -> None:
    """Serve the OpenAI-compatible REST endpoint, metrics and dashboard."""
    import os

    from ragcache.server import serve as run_server

    # Overrides travel as RAGCACHE_* variables so every uvicorn worker sees them.
    for name, value in {"KIND": backend, "BASE_URL": base_url, "MODEL": model}.items():
        if value is not None:
            os.environ[f"RAGCACHE_BACKEND__{name}"] = value
    run_server(config, host, port, workers)


# --- end serve -------------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
