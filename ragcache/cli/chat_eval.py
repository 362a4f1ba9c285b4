"""CLI command ``ragcache eval-chat``: ragcache's conversations against top-k chat patterns at equal cost.

Registered on the main typer app by :func:`register` (ragcache/cli/__init__.py); the evaluation
itself is :mod:`ragcache.bench.chat_eval` (and :mod:`ragcache.bench.chat_baselines`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ragcache.cli.output import console, handle_errors
from ragcache.cli.router import DEFAULT_WINDOWS

if TYPE_CHECKING:
    from collections.abc import Callable

    from ragcache.cache.replay import CacheRules
    from ragcache.config import Config
    from ragcache.corpus.manifest import CompiledCorpus
    from ragcache.router import Router

__all__ = ["eval_chat", "parse_windows", "register", "router_factory"]

LABELS = {
    "ragcache": "ragcache",
    "ragcache_question_only": "ragcache, question-only query",
    "topk_in_system": "top-k in system =cost",
    "topk_after_history": "top-k after history =cost",
}


def eval_chat(
    corpus: Annotated[Path, typer.Option("--corpus", help="Corpus folder or build folder.")] = Path("corpora/sqlite"),
    qa: Annotated[
        Path | None, typer.Option("--qa", help="QA JSON lines with gold documents (default: <corpus>/qa.jsonl).")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config YAML (router, conversation).")] = None,
    windows: Annotated[str, typer.Option("--windows", help="Context windows, comma-separated.")] = DEFAULT_WINDOWS,
    turns: Annotated[int, typer.Option("--turns", help="Questions per conversation.")] = 5,
    vendor_model: Annotated[str, typer.Option("--vendor-model", help="Model whose cache prices are replayed.")] = (
        "claude-sonnet-4-5"
    ),
    ttl: Annotated[str | None, typer.Option("--ttl", help="Cache TTL: 5m or 1h (default: the vendor's).")] = None,
    rate_per_min: Annotated[float, typer.Option("--rate-per-min", min=0.001, help="Turn arrival rate.")] = 10.0,
    answer_tokens: Annotated[int, typer.Option("--answer-tokens", min=0, help="Synthetic answer length.")] = 150,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of recall against $ per 1k turns.")] = None,
) -> None:
    """Per-turn recall and $ per 1,000 turns of conversations: ragcache against top-k chat patterns at equal cost."""
    from ragcache.bench.chat_eval import build_conversations, evaluate_chat
    from ragcache.cache.replay import rules_for
    from ragcache.config import load_config
    from ragcache.corpus.store import load_corpus
    from ragcache.router.evaluate import load_qa

    sizes = parse_windows(windows)
    if turns < 1:
        raise typer.BadParameter(f"must be at least 1, got {turns}", param_hint="--turns")
    cfg = load_config(config)
    compiled = load_corpus(corpus)
    qa_path = qa or corpus / "qa.jsonl"
    if not qa_path.is_file():
        hint = "" if qa else " (the default: <corpus>/qa.jsonl); pass --qa"
        raise typer.BadParameter(f"QA file {qa_path} does not exist{hint}", param_hint="--qa")
    items = load_qa(qa_path, compiled)
    rules = rules_for(vendor_model, ttl)  # type: ignore[arg-type]
    sets = build_conversations(compiled, items, turns)
    if not any(sets.values()):
        raise typer.BadParameter(f"{qa_path} has too few questions for a conversation of 2+ turns", param_hint="--qa")
    report = evaluate_chat(
        compiled,
        sets,
        router_factory(compiled, cfg, rules, rate_per_min),
        sizes,
        settings=cfg.conversation,
        reserved_output=cfg.backend.max_output_tokens,
        rules=rules,
        rate_per_min=rate_per_min,
        answer_tokens=answer_tokens,
        turns=turns,
    )
    report["qa"] = str(qa_path)
    if plot is not None:
        from ragcache.bench.chat_plot import plot_chat

        plot_chat(report, plot)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    print_report(report)


def parse_windows(text: str) -> list[int]:
    """Comma-separated positive token counts."""
    try:
        sizes = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated token counts, got {text!r}", param_hint="--windows"
        ) from None
    if not sizes or min(sizes) <= 0:
        raise typer.BadParameter(f"expected positive token counts, got {text!r}", param_hint="--windows")
    return sizes


def router_factory(
    corpus: CompiledCorpus, config: Config, rules: CacheRules, rate_per_min: float
) -> Callable[[int], Router]:
    """eval-router's ``make_router`` (evaluate_corpus): the window, questions per TTL from the replay's rate,
    the vendor's minimum cacheable tokens; every router shares one opened index."""
    from ragcache.backends.base import Capabilities
    from ragcache.router.embeddings import load_embedder
    from ragcache.router.index import open_index
    from ragcache.router.policy import HybridRouter

    index = open_index(corpus, load_embedder(config.router.embedding_model))
    per_ttl = rate_per_min * rules.planning_ttl_s / 60

    def make_router(window: int) -> Router:
        settings = config.router.model_copy(update={"window_tokens": window, "questions_per_ttl": per_ttl})
        capabilities = Capabilities(
            context_window=window, min_cacheable_tokens=rules.min_cacheable_tokens, ttl_s=rules.planning_ttl_s
        )
        return HybridRouter(
            corpus, settings, capabilities, config.backend.max_output_tokens, index=index, profile=rules.profile
        )

    return make_router


def print_report(report: dict[str, Any]) -> None:
    """One row per window and strategy."""
    sets = ", ".join(f"{v['conversations']} {k}" for k, v in report["sets"].items())
    title = (
        f"eval-chat: {report['corpus']} ({report['conversations']} conversations of ≤{report['turns']} turns: {sets})"
    )
    table = Table(title=title, title_justify="left")
    for column in (
        "window",
        "strategy",
        "recall",
        "any gold",
        "cached",
        "tokens",
        "$/1k turns",
        "compactions",
        "recall by turn",
    ):
        table.add_column(column, justify="left" if column in ("strategy", "recall by turn") else "right")
    for row in report["windows"]:
        for key, label in LABELS.items():
            f = row[key]
            budget = (
                f" (k={f['budget_tokens']:,}{'' if f['cost_matched'] else ', costs more'})"
                if "budget_tokens" in f
                else ""
            )
            table.add_row(
                f"{row['window']:,}" if key == "ragcache" else "",
                label + budget,
                f"{f['recall']:.3f}",
                f"{f['hit_rate']:.3f}",
                f"{f['cached_share']:.2f}",
                f"{f['prompt_tokens_mean']:,.0f}",
                f"{f['usd_per_1k_turns']:.2f}",
                str(f["compactions"]),
                " ".join(f"{r:.2f}" for r in f["recall_by_turn"] if r is not None),
                end_section=key == "topk_after_history",
            )
    console.print(table)
    console.print(
        f"cost: {report['vendor_model']} prompt cache replayed cold per set, turns in order at "
        f"{report['rate_per_min']:g}/min, TTL {report['cache_ttl_s']:g} s; synthetic answers of "
        f"~{report['answer_tokens']} tokens. recall = share of the new question's gold documents anywhere in the "
        "prompt; cached = cached read / input tokens; k = the baseline's per-turn excerpt budget at ragcache's "
        "$/1k turns.",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``eval-chat`` to ``app``."""
    app.command("eval-chat", short_help="Per-turn recall and $ per 1,000 turns: ragcache against top-k chat patterns.")(
        handle_errors(eval_chat)
    )
