"""CLI commands that answer questions: ``ask``, ``chat`` and ``demo``.

Every answer is followed by one line saying what the cache did.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from ragcache.cli.options import BackendOpt, BaseUrlOpt, ConfigOpt, CorpusOpt, MaxTokensOpt, ModelOpt
from ragcache.cli.output import (
    begin_answer,
    console,
    end_answer,
    err_console,
    generation_progress,
    handle_errors,
    progress,
    write_answer,
)

if TYPE_CHECKING:
    from ragcache.app import Answer, RagCache

__all__ = ["DEMO_NOTE", "DEMO_QUESTIONS", "REPO_CORPUS", "build_if_stale", "cache_report", "register"]

DEMO_QUESTIONS = (
    "What are the storage classes of SQLite?",
    "Why should AUTOINCREMENT usually be avoided?",
)
REPO_CORPUS = Path(__file__).resolve().parents[2] / "corpora" / "small"  # the demo's corpus in a checkout
DEMO_NOTE = (
    "note: the default 135M model shows the cache at work, not answer quality; for real answers run the same "
    "commands on a capable model: --config configs/vllm.yaml (or configs/openai.yaml, configs/anthropic.yaml), "
    "or set backend.model to a local Hugging Face folder"
)


def cache_report(answer: Answer) -> str:
    """One line: cached/total prompt tokens, what was written, TTFT, latency, route."""
    usage = answer.usage
    route = answer.route.mode if answer.route is not None else "-"
    cost = f" · ${answer.cost_usd:.6f}" if answer.cost_usd else ""  # None: unpriced; 0: self-hosted
    return (
        f"cache: {usage.cached_tokens}/{usage.input_tokens} prompt tokens cached ({usage.cached_ratio:.0%}), "
        f"{usage.cache_write_tokens} written · TTFT {answer.ttft_s:.2f}s · total {answer.latency_s:.2f}s · "
        f"{usage.output_tokens} output tokens · route {route}{_turn_note(answer)}{cost}"
    )


def _turn_note(answer: Answer) -> str:
    """`` · turn N`` from the second turn on, and what a compaction dropped."""
    turn = answer.turn
    if turn is None or turn.turn < 2:
        return ""
    note = f" · turn {turn.turn}"
    if turn.compaction is not None:
        dropped = turn.compaction
        note += f" (compacted: {dropped.snippet_turns} turns' excerpts, {dropped.dropped_turns} oldest turns dropped)"
    return note


def load_app(
    config: Path | None,
    corpus: Path | None,
    backend: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    max_tokens: int | None = None,
) -> RagCache:
    """The facade for a command, with its CLI overrides applied."""
    from ragcache.app import RagCache
    from ragcache.config import load_config

    cfg = load_config(config).with_backend(kind=backend, base_url=base_url, model=model, max_output_tokens=max_tokens)
    rag = RagCache.from_config(cfg, corpus=corpus)
    if rag.stale is not None:
        err_console.print(f"[yellow]warning:[/] {escape(rag.stale.message())}")
    return rag


def _print_stream(items: Iterator[Any]) -> Answer:
    """Print deltas as they come, with the prefill's progress on stderr until the first; return the Answer."""
    from ragcache.app import Answer

    answer = None
    with generation_progress() as shown:
        for item in items:
            if isinstance(item, Answer):
                answer = item
            else:
                if not shown.stopped:
                    shown.stop()
                    begin_answer()  # a note logged from here on ends the answer's line first
                write_answer(item)
    if not shown.stopped:  # no text at all: still one (empty) answer line
        begin_answer()
    end_answer()
    assert answer is not None
    return answer


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    config: ConfigOpt = None,
    corpus: CorpusOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (answer, route, usage, …).")] = False,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    max_tokens: MaxTokensOpt = None,
) -> None:
    """Answer one question from the compiled corpus, then say what the cache did."""
    rag = load_app(config, corpus, backend, base_url, model, max_tokens)
    try:
        if as_json:
            with generation_progress():
                answer = rag.ask(question)
            typer.echo(json.dumps(answer.to_dict(), ensure_ascii=False))
            return
        answer = _print_stream(rag.stream(question))
        err_console.print(escape(cache_report(answer)))
    finally:
        rag.close()


def chat(
    config: ConfigOpt = None,
    corpus: CorpusOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    max_tokens: MaxTokensOpt = None,
) -> None:
    """Multi-turn chat on stdin (one question per line; 'exit' or end of input stops)."""
    rag = load_app(config, corpus, backend, base_url, model, max_tokens)
    session = rag.session()
    interactive = sys.stdin.isatty()
    try:
        while True:
            if interactive:
                err_console.print("[bold]>[/] ", end="")
            line = sys.stdin.readline()
            if not line or line.strip().lower() in {"exit", "quit"}:
                break
            if not line.strip():
                continue
            answer = _print_stream(session.stream(line.strip()))
            err_console.print(escape(cache_report(answer)))
    finally:
        rag.close()


def demo(
    config: ConfigOpt = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Output tokens per answer.")] = 64,
) -> None:
    """Build the small sample corpus if needed, ask two questions, show the second served from the cache."""
    from ragcache.app import RagCache
    from ragcache.config import DEFAULT_MODEL, load_config
    from ragcache.corpus.store import default_build_dir
    from ragcache.models import ensure_model

    cfg = load_config(config)
    with progress() as report:
        model_dir = ensure_model(cfg.backend.model or DEFAULT_MODEL, progress=report)
    console.print(f"model: {escape(str(model_dir))}")
    if (cfg.backend.model or DEFAULT_MODEL) == DEFAULT_MODEL:
        console.print(f"[dim]{escape(DEMO_NOTE)}[/]")
    corpus_dir = cfg.resolved_corpus() if (cfg.resolved_corpus() / "corpus.yaml").exists() else REPO_CORPUS
    build_if_stale(corpus_dir, cfg.router.embedding_model)
    cfg = cfg.model_copy(
        update={
            "corpus": corpus_dir,
            "build_dir": default_build_dir(corpus_dir),
            "backend": cfg.backend.model_copy(update={"max_output_tokens": max_tokens}),
        }
    )
    rag = RagCache.from_config(cfg)
    try:
        answers = []
        for n, question in enumerate(DEMO_QUESTIONS, start=1):
            console.print(f"\n[bold]Q{n}:[/] {escape(question)}")
            answers.append(_print_stream(rag.stream(question)))
            console.print(f"[dim]{escape(cache_report(answers[-1]))}[/]")
        _demo_summary(answers)
    finally:
        rag.close()


def build_if_stale(corpus_dir: Path, embedding_model: str) -> None:
    """Build the corpus's default build (with the router's index) when missing or older than its sources."""
    from ragcache.corpus.store import build_staleness, ensure_built
    from ragcache.router.index import index_step

    reason = build_staleness(corpus_dir)
    if reason is None:
        return
    console.print(f"building {escape(str(corpus_dir))} ({reason})")
    with progress() as report:
        result = ensure_built(corpus_dir, steps=(index_step(embedding_model, progress=report),), progress=report)
    if result is not None:
        where = escape(str(result.build_dir))
        console.print(f"built {result.documents} documents into {where} in {result.seconds:.1f}s")


def _demo_summary(answers: list[Answer]) -> None:
    cold, warm = answers[0], answers[-1]
    speedup = cold.ttft_s / warm.ttft_s if warm.ttft_s > 0 else float("inf")
    console.print(
        f"\n[bold]Second question served from the cache:[/] {warm.usage.cached_tokens} of its "
        f"{warm.usage.input_tokens} prompt tokens ({warm.usage.cached_ratio:.0%}) were reused from the first; "
        f"time to first token {cold.ttft_s:.2f}s → {warm.ttft_s:.2f}s ({speedup:.1f}x faster)."
    )


def register(app: typer.Typer) -> None:
    """Add ``ask``, ``chat`` and ``demo`` to ``app``."""
    app.command("ask")(handle_errors(ask))
    app.command("chat")(handle_errors(chat))
    app.command("demo")(handle_errors(demo))
