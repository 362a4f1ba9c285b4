"""CLI command ``ragcache eval-router``: router recall and cost against fused top-k, per context window.

Registered on the main typer app by :func:`register` (ragcache/cli/__init__.py); the
evaluation itself is :mod:`ragcache.router.evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ragcache.cli.output import console, handle_errors

__all__ = ["DEFAULT_WINDOWS", "corpus_qa", "eval_router", "parse_rates", "register"]

DEFAULT_WINDOWS = "8192,32768,131072,200000"
DEFAULT_RATE = 10.0


def eval_router(
    corpus: Annotated[Path, typer.Option("--corpus", help="Corpus folder or build folder.")] = Path("corpora/sqlite"),
    qa: Annotated[
        Path | None,
        typer.Option(
            "--qa",
            help="QA JSON lines, one {question, gold_doc_ids} per line (default: <corpus>/qa.jsonl; "
            "format: docs/routing.md).",
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config YAML (router, backend).")] = None,
    windows: Annotated[str, typer.Option("--windows", help="Context windows, comma-separated.")] = DEFAULT_WINDOWS,
    vendor_model: Annotated[str, typer.Option("--vendor-model", help="Model whose cache prices are replayed.")] = (
        "claude-sonnet-4-5"
    ),
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", help="TTL option of the model's cache profile, e.g. 5m or 1h (default: its own)."),
    ] = None,
    rate_per_min: Annotated[
        float | None, typer.Option("--rate-per-min", min=0.001, help="Question arrival rate per minute (default 10).")
    ] = None,
    rates: Annotated[
        str | None, typer.Option("--rates", help="Several arrival rates per minute in one run, e.g. 2,10,60.")
    ] = None,
    snippet_tokens: Annotated[int | None, typer.Option("--snippet-tokens", min=0)] = None,
    dense_weight: Annotated[float | None, typer.Option("--dense-weight", min=0.0, max=1.0)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of recall against $ per 1k.")] = None,
) -> None:
    """Recall and $ per 1,000 questions: the router against fused top-k at equal tokens and equal cost."""
    from ragcache.cache.replay import rules_for
    from ragcache.config import load_config
    from ragcache.corpus.store import load_corpus
    from ragcache.router.evaluate import evaluate_corpus, load_qa, topk_curve

    cfg = load_config(config)
    updates = {k: v for k, v in (("snippet_tokens", snippet_tokens), ("dense_weight", dense_weight)) if v is not None}
    cfg = cfg.model_copy(update={"router": cfg.router.model_copy(update=updates)})
    try:
        sizes = [int(w) for w in windows.split(",") if w.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated token counts, got {windows!r}", param_hint="--windows"
        ) from None
    qa_path = qa if qa is not None else corpus_qa(corpus)  # before the (slow) corpus load
    compiled = load_corpus(corpus)
    items = load_qa(qa_path, compiled)
    if rates is not None and rate_per_min is not None:
        raise typer.BadParameter("give --rates or --rate-per-min, not both", param_hint="--rates")
    arrival_rates = parse_rates(rates) if rates is not None else [rate_per_min or DEFAULT_RATE]
    rules = rules_for(vendor_model, ttl)  # type: ignore[arg-type]
    report, topk = evaluate_corpus(compiled, items, sizes, config=cfg, rules=rules, rates_per_min=arrival_rates)
    report["qa"] = str(qa_path)
    budgets = sorted({int(b) for b in _sweep(max(w["corpus_budget"] for w in report["windows"]))})
    curves = {rate: topk_curve(topk, budgets, rate, rules) for rate in report["rates_per_min"]}
    report["topk_curve"] = [
        {"rate_per_min": rate, "corpus_budget": b, "usd_per_1k": round(x, 4), "recall": round(y, 4)}
        for rate, curve in curves.items()
        for b, (x, y) in zip(budgets, curve, strict=True)
    ]
    if plot is not None:
        from ragcache.router.eval_plot import plot_report

        plot_report(report, curves, plot)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    print_report(report)


def corpus_qa(corpus: Path) -> Path:
    """``<corpus>/qa.jsonl``, as ``--qa``'s help says; a usage error naming it when absent.

    Never another corpus's set: gold documents of one corpus are not documents of another.
    """
    path = corpus / "qa.jsonl"
    if not path.is_file():
        raise typer.BadParameter(
            f"QA file {path} does not exist (the default: <corpus>/qa.jsonl); pass --qa with a QA file "
            "for this corpus (one JSON object per line: question, gold_doc_ids; see docs/routing.md)",
            param_hint="--qa",
        )
    return path


def parse_rates(text: str) -> list[float]:
    """``"2,10,60"`` → ``[2.0, 10.0, 60.0]`` (sorted, distinct); anything else is a ``--rates`` error."""
    try:
        values = sorted({float(r) for r in text.split(",") if r.strip()})
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated questions per minute, got {text!r}", param_hint="--rates"
        ) from None
    if not values or not all(0 < v < float("inf") for v in values):
        raise typer.BadParameter(f"rates must be positive questions per minute, got {text!r}", param_hint="--rates")
    return values


def _sweep(high: int) -> list[float]:
    """Budgets from 256 tokens to ``high``, evenly spaced on a log scale."""
    import numpy as np

    return list(np.geomspace(256, max(high, 257), 24))


def print_report(report: dict[str, Any]) -> None:
    """One row per rate, window and strategy."""
    title = f"eval-router: {report['corpus']} ({report['questions']} questions, {report['corpus_tokens']:,} tokens)"
    table = Table(title=title, title_justify="left")
    for column in ("rate/min", "window", "strategy", "recall", "any gold", "tokens", "budget", "prefixes", "$/1k q"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    labels = {"router": "router", "topk_equal_tokens": "top-k =tokens", "topk_equal_cost": "top-k =cost"}
    for row in report["windows"]:
        for key, label in labels.items():
            f = row[key]
            table.add_row(
                f"{row['rate_per_min']:g}" if key == "router" else "",
                f"{row['window']:,}" if key == "router" else "",
                label,
                f"{f['recall']:.3f}",
                f"{f['hit_rate']:.3f}",
                f"{f['prompt_tokens_mean']:,.0f}",
                f"{f['budget_used_share']:.2f}" if "budget_used_share" in f else "",
                str(f.get("distinct_prefixes", "")),
                f"{f['usd_per_1k']:.3f}",
                end_section=key == "topk_equal_cost",
            )
    console.print(table)
    rates = ", ".join(f"{r:g}" for r in report["rates_per_min"])
    console.print(
        f"cost: {report['vendor_model']} prompt cache replayed cold, questions in file order at "
        f"{rates}/min, TTL {report['cache_ttl_s']:g} s; question and output tokens left out. "
        "recall = share of a question's gold documents in the prompt; any gold = at least one; tokens = mean "
        "prompt tokens; budget = the router's share of the window's corpus budget.",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``eval-router`` to ``app``."""
    app.command("eval-router")(handle_errors(eval_router))
