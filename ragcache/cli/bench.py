"""CLI: ``ragcache bench`` (replay a workload, write a report), ``bench make-workload``
(generate one from a QA set), ``bench render`` (re-render a report) and ``bench ttft``
(cold vs. cached time to first token on the local backend).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragcache.cli.output import console, err_console, handle_errors
from ragcache.errors import ConfigError

__all__ = ["register"]

bench_app = typer.Typer(
    help="Replay a workload through ragcache, naive RAG, full context and no cache; report side by side.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)


def bench(
    ctx: typer.Context,
    workload: Annotated[Path | None, typer.Option("--workload", "-w", help="Workload JSONL.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for report.md, results.json, PNGs.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="ragcache config YAML.")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="Override backend.kind (local, vllm, …).")] = None,
    strategies: Annotated[str, typer.Option(help="Comma-separated: ragcache,naive-rag,full,no-cache.")] = (
        "ragcache,naive-rag,full,no-cache"
    ),
    limit: Annotated[int | None, typer.Option(help="Replay only the first N requests.", min=1)] = None,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per answer.", min=1)] = 32,
    warmup_requests: Annotated[int, typer.Option(help="Requests left out of the 'steady' ratio.", min=0)] = 0,
    time_scale: Annotated[
        float, typer.Option(help="Honour arrival offsets at this speed (0 = back to back).", min=0.0)
    ] = 0.0,
    naive_budget: Annotated[
        int | None, typer.Option(help="naive-rag chunk tokens (default: matched to ragcache).", min=1)
    ] = None,
    naive_match: Annotated[
        str,
        typer.Option(
            help="naive-rag budget per request: cost (ragcache's cost, prefix cached) or tokens (its corpus tokens)."
        ),
    ] = "cost",
    warm: Annotated[str, typer.Option(help="ragcache warm-up: traffic (the capped warm set), all or none.")] = (
        "traffic"
    ),
    warm_from: Annotated[
        str, typer.Option(help="Warm from: first-half (measure the rest), measured (an oracle: labelled so) or none.")
    ] = "first-half",
    notes: Annotated[Path | None, typer.Option(help="Markdown lines to add under Notes in the report.")] = None,
) -> None:
    """Replay WORKLOAD through the strategies, interleaved, and write a report into OUT."""
    if ctx.invoked_subcommand is not None:
        return
    if workload is None or out is None:
        raise ConfigError("ragcache bench needs --workload FILE and --out DIR (or a subcommand: make-workload)")
    from ragcache.bench.experiment import BenchSettings, run_bench
    from ragcache.bench.workload import load_workload
    from ragcache.config import load_config

    cfg = load_config(config)
    if backend:
        cfg = cfg.model_copy(update={"backend": cfg.backend.model_copy(update={"kind": backend})})
    items = load_workload(workload, limit=limit)
    names = tuple(s.strip() for s in strategies.split(",") if s.strip())
    extra = tuple(line.removeprefix("- ") for line in _read_notes(notes))
    settings = BenchSettings(
        strategies=names,
        max_tokens=max_tokens,
        warmup_requests=warmup_requests,
        time_scale=time_scale,
        naive_budget=naive_budget,
        naive_match=naive_match,
        warm=warm,
        warm_from=warm_from,
        workload_path=str(workload),
        command=_command_line(),
        notes=extra,
    )
    result = _run_with_progress(run_bench, cfg, items, out, settings, len(names))
    _print_summary(result, out)
    if "interrupted" in result.meta:
        err_console.print(f"interrupted: {escape(str(result.meta['interrupted']))}, written to {escape(str(out))}")
        raise typer.Exit(130)


def _read_notes(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read notes: {exc}") from None


def _command_line() -> str:
    return "ragcache " + " ".join(shlex.quote(a) for a in sys.argv[1:])


STARTING = "loading model and corpus, warming prefixes"


def _run_with_progress(run: Callable[..., Any], cfg: Any, items: list, out: Path, settings: Any, n: int) -> Any:
    """Run the bench with a bar (a terminal) or a status line per answer (stderr), each with an ETA."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ragcache.bench.experiment import split_workload

    measured = len(split_workload(items, settings.warm_from)[1])  # the warm-up part is routed, not replayed
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
    total, ends = measured * n, []  # ends: when each answer came, for an ETA from the measured part only
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(STARTING, total=total)
        if not err_console.is_terminal:  # the bar is not drawn: say what the first minutes are spent on
            err_console.print(f"{STARTING}…")

        def progress(strategy: str, index: int) -> None:
            bar.update(task, advance=1, description=f"request {index + 1}/{measured} · {strategy}")
            if not err_console.is_terminal:  # logs of non-interactive runs still show progress
                ends.append(time.monotonic())
                done = len(ends)
                eta = (ends[-1] - ends[0]) / (done - 1) * (total - done) if done > 1 else None
                when = f", ETA {_minutes(eta)}" if eta is not None and done < total else ""
                err_console.print(f"request {index + 1}/{measured} {escape(strategy)} done ({done}/{total}{when})")

        return run(cfg, items, out, settings, progress)


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def _print_summary(result: Any, out: Path) -> None:
    table = Table(title="ragcache bench")
    for column in ("strategy", "TTFT p50 s", "TTFT p95 s", "cached ratio", "hit rate", "prefixes", "recall"):
        table.add_column(column)
    for s in result.summaries:
        recall = "–" if s.evidence_recall is None else f"{s.evidence_recall:.2f}"
        table.add_row(
            escape(s.strategy),
            f"{s.ttft_p50_s:.3f}",
            f"{s.ttft_p95_s:.3f}",
            f"{s.cached_ratio:.3f}",
            f"{s.hit_rate:.2f}",
            str(s.distinct_prefixes),
            recall,
        )
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    console.print(f"report: {out / 'report.md'}")


def make_workload(
    qa: Annotated[Path, typer.Option("--qa", help="QA set JSONL (question, gold doc ids, answers).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Workload JSONL to write.")],
    kind: Annotated[str, typer.Option(help="independent, sessions, skewed or bursty.")] = "independent",
    n: Annotated[int, typer.Option("-n", help="Number of requests.", min=1)] = 30,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same file).")] = 0,
    corpus: Annotated[Path | None, typer.Option(help="Compiled corpus: fills categories from gold docs.")] = None,
    group: Annotated[str, typer.Option(help="With --corpus: group questions by 'category' or by 'block'.")] = (
        "category"
    ),
    turns: Annotated[int, typer.Option(help="sessions: turns per session.", min=1)] = 3,
    burst: Annotated[int, typer.Option(help="bursty: requests per burst.", min=1)] = 5,
    gap_s: Annotated[float, typer.Option(help="bursty: idle gap between bursts (make it > the TTL).")] = 600.0,
    interval_s: Annotated[float, typer.Option(help="Mean gap between requests.", min=0.0)] = 1.0,
    zipf_s: Annotated[float, typer.Option(help="skewed: Zipf exponent of category popularity.", min=0.0)] = 1.2,
) -> None:
    """Generate a workload from a QA set, deterministically."""
    from ragcache.bench.workload import dump_workload, generate, load_qa

    items = load_qa(qa)
    if corpus is not None:
        items = _with_categories(items, corpus, group)
    params: dict[str, Any] = {"interval_s": interval_s}
    if kind == "sessions":
        params["turns"] = turns
    if kind == "bursty":
        params.update(burst=burst, gap_s=gap_s)
    if kind == "skewed":
        params["zipf_s"] = zipf_s
    workload = generate(kind, items, n, seed=seed, **params)
    dump_workload(workload, out)
    console.print(f"wrote {len(workload)} requests ({kind}, seed {seed}) to {out}")


def _with_categories(items: list, corpus_path: Path, group: str) -> list:
    """Set each question's category (or block, for block-level popularity) from its first gold document."""
    from ragcache.corpus.store import load_corpus

    if group not in ("category", "block"):
        raise ConfigError(f"unknown --group {group!r}; valid: category, block")
    corpus = load_corpus(corpus_path)
    if group == "block":
        owner = {d: b for b in corpus.category_block_ids() for d in corpus.block(b).documents}
    else:
        owner = {d.id: d.category for d in corpus.manifest.documents}
    out = []
    for item in items:
        known = [owner[d] for d in item.gold_doc_ids if d in owner]
        out.append(replace(item, category=known[0]) if known else item)
    return out


def render(
    results: Annotated[Path, typer.Option("--results", help="results.json of an earlier run.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the re-rendered report and plots.")],
    notes: Annotated[Path | None, typer.Option(help="Markdown lines to add under Notes.")] = None,
) -> None:
    """Re-render report.md and the plots from results.json, for instance to add notes on a missed target."""
    from ragcache.bench.report import load_result, write_report

    result = load_result(results)
    extra = [line.removeprefix("- ") for line in _read_notes(notes)]
    result.notes += [line for line in extra if line not in result.notes]
    console.print(f"report: {write_report(result, out)}")


def ttft(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config YAML (default: the defaults).")] = None,
    corpus: Annotated[Path | None, typer.Option("--corpus", help="Corpus folder (default: corpora/small).")] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, max=7, help="Questions per mode.")] = 3,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch threads (default: torch's).")] = None,
) -> None:
    """Median TTFT cold and cached on one corpus (local backend), and their ratio."""
    from ragcache.bench.ttft import measure_ttft
    from ragcache.cli.ask import REPO_CORPUS, build_if_stale
    from ragcache.config import load_config

    cfg = load_config(config)
    if threads is not None:
        options = {**cfg.backend.options, "threads": threads}
        cfg = cfg.model_copy(update={"backend": cfg.backend.model_copy(update={"options": options})})
    corpus_dir = corpus or (cfg.resolved_corpus() if (cfg.resolved_corpus() / "corpus.yaml").exists() else REPO_CORPUS)
    build_if_stale(corpus_dir, cfg.router.embedding_model)
    _print_ttft(measure_ttft(cfg, corpus_dir, runs))


def _print_ttft(run: Any) -> None:
    import statistics

    from ragcache.bench.ttft import TARGET_RATIO

    title = f"TTFT on {run.corpus_dir} (local backend, {run.threads} torch threads, {len(run.cold)} questions/mode)"
    table = Table(title=title)
    for column in ("mode", "prompt tokens", "cached tokens", "TTFT median (s)", "min (s)", "max (s)"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for name, answers in (("cold", run.cold), ("cached", run.cached)):
        ttfts = [a.ttft_s for a in answers]
        table.add_row(
            name,
            str(int(statistics.median(a.usage.input_tokens for a in answers))),
            str(int(statistics.median(a.usage.cached_tokens for a in answers))),
            f"{statistics.median(ttfts):.3f}",
            f"{min(ttfts):.3f}",
            f"{max(ttfts):.3f}",
        )
    console.print(table)
    verdict = "meets" if run.ratio >= TARGET_RATIO else "misses"
    console.print(f"cold / cached median TTFT: {run.ratio:.1f}x ({verdict} the {TARGET_RATIO:.0f}x target)")


def load(ctx: typer.Context) -> None:
    """Concurrent multi-turn chat sessions through the openai SDK against `ragcache serve`
    (all flags: `ragcache bench load --help`; the same as `python -m ragcache.bench.load`)."""
    from ragcache.bench.load import main as load_main

    raise typer.Exit(load_main(list(ctx.args)))


def register(app: typer.Typer) -> None:
    """Add ``bench`` (and its subcommands) to the main app."""
    bench_app.callback()(handle_errors(bench))
    bench_app.command("make-workload")(handle_errors(make_workload))
    bench_app.command("render")(handle_errors(render))
    bench_app.command("ttft")(handle_errors(ttft))
    bench_app.command(
        "load",
        short_help="Concurrent multi-turn chat sessions against `ragcache serve` (python -m ragcache.bench.load).",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    )(handle_errors(load))
    app.add_typer(bench_app, name="bench")
