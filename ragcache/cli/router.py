"""CLI command ``ragcache eval-router``: the router against top-k retrieval on a QA set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ragcache.cli.output import console, handle_errors

if TYPE_CHECKING:
    from ragcache.router.evaluate import RouterEval

__all__ = ["DEFAULT_WINDOW", "eval_router", "register"]

DEFAULT_WINDOW = 8192  # the local SmolLM2 model's context, used when the config names none


def eval_router(
    corpus: Annotated[Path, typer.Option("--corpus", help="Corpus folder or build folder.")] = Path("corpora/sqlite"),
    qa: Annotated[Path, typer.Option("--qa", help="QA JSON lines with gold documents.")] = Path(
        "tests/data/sqlite_qa.jsonl"
    ),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config YAML (router, backend).")] = None,
    window: Annotated[int | None, typer.Option("--window", min=1, help="Context window (default: config).")] = None,
    snippet_tokens: Annotated[int | None, typer.Option("--snippet-tokens", min=0)] = None,
    dense_weight: Annotated[float | None, typer.Option("--dense-weight", min=0.0, max=1.0)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Evidence recall, distinct prefixes and prompt tokens: router vs top-k at the same token budget."""
    from ragcache.backends.base import Capabilities
    from ragcache.config import load_config
    from ragcache.corpus.store import load_corpus
    from ragcache.router.evaluate import evaluate_router, load_qa
    from ragcache.router.policy import HybridRouter

    cfg = load_config(config)
    updates = {k: v for k, v in (("snippet_tokens", snippet_tokens), ("dense_weight", dense_weight)) if v is not None}
    router_config = cfg.router.model_copy(update=updates)
    compiled = load_corpus(corpus)
    items = load_qa(qa, compiled)
    capabilities = Capabilities(context_window=window or cfg.backend.context_window or DEFAULT_WINDOW)
    router = HybridRouter(compiled, router_config, capabilities, cfg.backend.max_output_tokens)
    report = evaluate_router(router, items)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        return
    print_report(report, capabilities.context_window)


def print_report(report: RouterEval, window: int) -> None:
    """The router and the baselines side by side."""
    table = Table(title=f"eval-router: {report.corpus} ({report.router.questions} questions)", title_justify="left")
    for column in ("strategy", "evidence recall", "distinct prefixes", "prompt tokens (mean)", "(median)"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for stats in (report.router, *report.baselines):
        row = stats.to_dict()
        table.add_row(
            stats.name,
            f"{row['evidence_recall']:.3f} ({stats.hits}/{stats.questions})",
            str(row["distinct_prefixes"]),
            f"{row['prompt_tokens_mean']:,.0f}",
            f"{row['prompt_tokens_median']:,.0f}",
        )
    console.print(table)
    modes = ", ".join(f"{k} {v}" for k, v in sorted(report.modes.items()))
    console.print(
        f"window {window}, corpus budget {report.budget} tokens; mode {report.mode}; routes: {modes}\n"
        f"prefix bound: {report.category_blocks} category blocks ({report.categories} categories, split into parts) "
        f"+ {report.stacks_used} canonical pairs used = {report.prefix_bound}; "
        f"router used {len(report.router.prefixes)}\n"
        "prompt tokens = corpus tokens in the prompt (blocks + snippets, or retrieved chunks); top-k gets the "
        "router's count question by question",
    )


def register(app: typer.Typer) -> None:
    """Add ``eval-router`` to ``app``."""
    app.command("eval-router")(handle_errors(eval_router))
