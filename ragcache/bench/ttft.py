"""Time to first token, cold vs. served from the prefix cache, side by side in one run.

    python -m ragcache.bench.ttft [--config F] [--corpus DIR] [--runs N]

Cold: the prefix store is emptied before each question, so the whole prompt
(instructions + corpus + question) is prefilled. Cached: the router's prefix is
warmed once, then each question only computes its own tokens. Each request
generates one token; TTFT is measured by the facade (routing included).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ragcache.backends.base import GenerationOptions

__all__ = ["QUESTIONS", "main"]

QUESTIONS = (
    "What are the storage classes of SQLite?",
    "Why should AUTOINCREMENT usually be avoided?",
    "Can several processes write to the same database at once?",
    "Does SQLite need to be installed or configured?",
    "What happens when a string is stored in an INTEGER column?",
    "Is SQLite a client/server database?",
    "How large can a ROWID get?",
)

console = Console(highlight=False)


def main(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config YAML (default: the defaults).")] = None,
    corpus: Annotated[Path | None, typer.Option("--corpus", help="Corpus folder (default: corpora/small).")] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, max=len(QUESTIONS), help="Questions per mode.")] = 3,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch threads (default: torch's).")] = None,
) -> None:
    """Median TTFT cold vs. cached on one corpus and their ratio."""
    from ragcache.app import RagCache
    from ragcache.app_commands import _REPO_CORPUS, ensure_built
    from ragcache.config import load_config

    cfg = load_config(config)
    if threads is not None:
        options = {**cfg.backend.options, "threads": threads}
        cfg = cfg.model_copy(update={"backend": cfg.backend.model_copy(update={"options": options})})
    corpus_dir = corpus or (cfg.resolved_corpus() if (cfg.resolved_corpus() / "corpus.yaml").exists() else _REPO_CORPUS)
    build = ensure_built(corpus_dir)
    rag = RagCache.from_config(cfg.model_copy(update={"corpus": corpus_dir, "build_dir": build}))
    store = getattr(rag.backend, "store", None)
    if store is None:
        raise typer.BadParameter("needs the local backend with cache.enabled: true", param_hint="--config")
    one = GenerationOptions(max_tokens=1)
    try:
        cold = []
        for question in QUESTIONS[:runs]:
            store.clear()
            cold.append(rag.ask(question, options=one))
        for prompt in rag.prefixes():
            rag.backend.warm(prompt)
        cached = [rag.ask(question, options=one) for question in QUESTIONS[-runs:]]
    finally:
        rag.close()
    _report(corpus_dir, cold, cached)


def _report(corpus_dir: Path, cold: list, cached: list) -> None:
    import torch

    title = f"TTFT on {corpus_dir} (local backend, {torch.get_num_threads()} torch threads, {len(cold)} questions/mode)"
    table = Table(title=title)
    for column in ("mode", "prompt tokens", "cached tokens", "TTFT median (s)", "min (s)", "max (s)"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    medians = {}
    for name, answers in (("cold", cold), ("cached", cached)):
        ttfts = [a.ttft_s for a in answers]
        medians[name] = statistics.median(ttfts)
        table.add_row(
            name,
            str(int(statistics.median(a.usage.input_tokens for a in answers))),
            str(int(statistics.median(a.usage.cached_tokens for a in answers))),
            f"{medians[name]:.3f}", f"{min(ttfts):.3f}", f"{max(ttfts):.3f}",
        )
    console.print(table)
    ratio = medians["cold"] / medians["cached"] if medians["cached"] > 0 else float("inf")
    verdict = "meets" if ratio >= 10 else "misses"
    console.print(f"cold / cached median TTFT: {ratio:.1f}x ({verdict} the 10x target)")


if __name__ == "__main__":
    typer.run(main)
