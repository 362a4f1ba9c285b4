"""CLI commands for caches: ``warm``, ``cache info``/``cache clear`` (the local KV folder) and ``vllm-command``.

``max_model_len``, ``vllm_serve_command`` and ``vllm_router_command`` are plain
functions so they can be called (and tested) without the CLI.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ragcache.backends.vllm.flags import KV_EVENTS_BLOCK_SIZE, kv_events_args, kv_offloading_args
from ragcache.cli.options import BackendOpt, BaseUrlOpt, ConfigOpt, CorpusOpt, ModelOpt
from ragcache.cli.output import console, err_console, generation_progress, handle_errors

if TYPE_CHECKING:
    from ragcache.app import RagCache
    from ragcache.cache.warmer import WarmResult
    from ragcache.config import Config
    from ragcache.corpus.manifest import CompiledCorpus
    from ragcache.prompt import Prompt

__all__ = [
    "max_model_len",
    "register",
    "vllm_router_command",
    "vllm_serve_command",
]

_SEGMENT_ROUNDING = 1024


def _load(config: Path | None, backend: str | None, base_url: str | None, model: str | None) -> Config:
    from ragcache.config import load_config

    return load_config(config).with_backend(kind=backend, base_url=base_url, model=model)


def _table(results: list[WarmResult]) -> Table:
    table = Table(title="warm-up", show_lines=False)
    for column in ("prefix", "fingerprint", "prefix tokens", "expected cached", "cached on repeat", "status"):
        table.add_column(column)
    colours = {"cached": "green", "warmed": "green", "not-cached": "bold red", "below-minimum": "yellow"}
    for r in results:
        cached = str(r.verify_usage.cached_tokens) if r.verify_usage else "-"
        colour = colours.get(r.status, "red")
        table.add_row(
            escape(r.label),
            r.fingerprint[:12],
            str(r.prefix_tokens),
            str(r.expected_cached),
            cached,
            f"[{colour}]{r.status}[/]",
        )
    return table


def warm(
    config: ConfigOpt = None,
    corpus: CorpusOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Repeat each warm-up to prove it cached.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per prefix.")] = False,
    max_prefixes: Annotated[
        int | None, typer.Option("--max-prefixes", min=1, help="Cap on prefixes (default cache.warm_max_prefixes).")
    ] = None,
) -> None:
    """Warm the warm set (pins, then the prefixes traffic used, else the router's guess), capped by
    cache.warm_max_prefixes and cache.warm_max_tokens; report per prefix whether it cached.

    Exits 1 when a prefix that should have cached did not (flagged), 6 when the backend failed.
    """
    from ragcache.app import RagCache
    from ragcache.cache.warmer import Warmer

    loaded = _load(config, backend, base_url, model)
    if max_prefixes is not None:
        cache = loaded.cache.model_copy(update={"warm_max_prefixes": max_prefixes})
        loaded = loaded.model_copy(update={"cache": cache})
    rag = RagCache.from_config(loaded, corpus=corpus)
    try:
        prompts = rag.warm_set()
        retired = _retire_stale(rag, prompts)
        with generation_progress() as report:
            results = Warmer(rag.backend).warm(prompts, verify=verify, progress=report)
        plan = getattr(rag.backend, "last_plan", None)
    finally:
        rag.close()
    if retired:
        err_console.print(f"deleted {len(retired)} cache(s) of an earlier build: {escape(', '.join(retired))}")
    if as_json:
        for result in results:
            typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        console.print(_table(results))
        for result in results:
            if result.status not in ("cached", "warmed"):
                err_console.print(f"{escape(result.label)}: {result.status}: {escape(result.detail)}")
        for warning in plan.warnings if plan is not None else ():
            err_console.print(f"breakpoint {escape(warning)}")
    if any(r.status == "error" for r in results):
        raise typer.Exit(6)
    if any(r.flagged for r in results):
        err_console.print("[bold red]some prefixes should have cached but did not[/] (see the table)")
        raise typer.Exit(1)


def _retire_stale(rag: RagCache, prompts: list[Prompt]) -> list[str]:
    """Delete the caches an earlier build left (their names); a failure is a note, the warm-up goes on."""
    from ragcache.errors import RagCacheError

    try:
        return rag.retire_stale_caches(p.prefix_fingerprint for p in prompts)
    except RagCacheError as exc:
        err_console.print(f"note: deleting the caches of an earlier build failed: {escape(str(exc))}")
        return []


def max_model_len(corpus: CompiledCorpus, config: Config) -> int:
    """Context the server needs for the whole corpus as the prefix (the ``full`` route, which
    has no tail), history and the answer, rounded up to a multiple of 1024."""
    blocks = corpus.blocks
    fixed = sum(b.tokens for b in blocks.values() if b.kind in ("instructions", "examples", "tools"))
    full = corpus.full_block_id
    body = blocks[full].tokens if full else corpus.total_tokens
    router = config.router
    need = fixed + body + router.history_allowance + config.backend.max_output_tokens + 64
    return -(-need // _SEGMENT_ROUNDING) * _SEGMENT_ROUNDING


def vllm_serve_command(
    hf_model: str,
    served_name: str,
    length: int,
    *,
    port: int = 8000,
    tensor_parallel: int = 1,
    extra: list[str] | None = None,
) -> list[str]:
    """The ``vllm serve`` argv for a GPU deployment with prefix caching and cache usage reporting;
    ``extra`` appends flags (``kv_offloading_args``, ``kv_events_args``)."""
    argv = [
        "vllm", "serve", hf_model,
        "--served-model-name", served_name,
        "--host", "0.0.0.0",
        "--port", str(port),
        "--max-model-len", str(length),
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
    ]  # fmt: skip
    if tensor_parallel > 1:
        argv += ["--tensor-parallel-size", str(tensor_parallel)]
    return argv + list(extra or [])


def vllm_router_command(replica_urls: list[str], *, port: int = 9000) -> list[str]:
    """The ``vllm-router`` argv in front of the replicas: consistent hashing on
    ``X-Session-ID``, the header ragcache fills with the prefix's affinity key."""
    if not replica_urls:
        raise ValueError("vllm-router needs at least one replica URL")
    return ["vllm-router", "--host", "0.0.0.0", "--port", str(port), "--policy", "consistent_hash",
            "--worker-urls", *replica_urls]  # fmt: skip


def vllm_command(
    config: ConfigOpt = None,
    corpus: CorpusOpt = None,
    hf_model: Annotated[
        str, typer.Option("--hf-model", help="Hugging Face model id or path the server loads.")
    ] = "HuggingFaceTB/SmolLM2-135M-Instruct",
    port: Annotated[int, typer.Option("--port", help="Server port.")] = 8000,
    tensor_parallel: Annotated[int, typer.Option("--tensor-parallel", min=1, help="GPUs per replica.")] = 1,
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, help="Replicas: one serve line each (PORT, PORT+1…) and a router line.")
    ] = 1,
    router_port: Annotated[int, typer.Option("--router-port", help="Router port (with --replicas > 1).")] = 9000,
    kv_offload_gib: Annotated[
        float | None,
        typer.Option("--kv-offload-gib", help="Offload evicted KV blocks to this many GiB of CPU memory per replica."),
    ] = None,
    kv_offload_backend: Annotated[
        str, typer.Option("--kv-offload-backend", help="native (vLLM's own CPU offloading) or lmcache.")
    ] = "native",
    kv_events: Annotated[
        str | None,
        typer.Option("--kv-events", help="Publish KV-cache events on this ZMQ endpoint (e.g. tcp://*:5557)."),
    ] = None,
    kv_block_size: Annotated[
        int, typer.Option("--kv-block-size", help="KV block size with --kv-events (the scorer's blockSize).")
    ] = KV_EVENTS_BLOCK_SIZE,
) -> None:
    """Print the `vllm serve` command line a GPU deployment of the built corpus should use
    (with --replicas N: N of them and the vllm-router line in front; docs/deploy.md)."""
    from ragcache.config import load_config
    from ragcache.corpus.store import load_corpus

    cfg = load_config(config)
    compiled = load_corpus(corpus if corpus is not None else cfg.resolved_corpus())
    length = max_model_len(compiled, cfg)
    served = cfg.backend.model or "smollm2"
    ports = [port + i for i in range(replicas)]
    try:
        extra = kv_offloading_args(kv_offload_gib, kv_offload_backend) if kv_offload_gib is not None else []
        if kv_events is not None:  # the topic names the replica: the indexer keys blocks by pod and model
            extra += kv_events_args(kv_events, f"kv@POD_IP@{served}", kv_block_size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    for p in ports:
        argv = vllm_serve_command(hf_model, served, length, port=p, tensor_parallel=tensor_parallel, extra=extra)
        typer.echo(shlex.join(argv))
    if replicas > 1:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        typer.echo(shlex.join(vllm_router_command(urls, port=router_port)))
        err_console.print(
            f"# then point ragcache at the router: backend.base_url http://<router-host>:{router_port}, "
            "backend.options.router: true (replica URLs: use each host's address on several machines)"
        )
    if kv_events is not None:
        err_console.print(
            f"# KV events: put each replica's address for POD_IP in the topic; block size {kv_block_size}",
            highlight=False,
        )
    err_console.print(
        f"# max-model-len {length}: whole corpus (the full route, no tail) + history "
        f"{cfg.router.history_allowance} + answer {cfg.backend.max_output_tokens} (corpus {compiled.name}, "
        f"token counts from the build's tokenizer)"
    )


def _kv_dir(config: Path | None) -> tuple[Path, int]:
    """The local KV folder the config names (or the default) and its bound in bytes."""
    from ragcache.backends.local.persist import resolve_dir
    from ragcache.config import load_config

    cfg = load_config(config).cache
    return resolve_dir(cfg.persist_dir), cfg.persist_max_mb * 1024 * 1024


def cache_info(config: ConfigOpt = None) -> None:
    """Show where the local backend keeps its prefix KV on disk, how much it holds and its bound."""
    from ragcache.backends.local.persist import disk_usage

    folder, bound = _kv_dir(config)
    used = disk_usage(folder)
    console.print(f"local KV folder: {escape(str(folder))}")
    console.print(f"{used.files} file(s), {_mb(used.bytes)} of {_mb(bound)} (cache.persist_max_mb; LRU beyond it)")


def cache_clear(config: ConfigOpt = None) -> None:
    """Delete every prefix KV file of the local backend (the next ask starts cold)."""
    from ragcache.backends.local.persist import clear

    folder, _ = _kv_dir(config)
    removed = clear(folder)
    console.print(f"removed {removed.files} file(s), {_mb(removed.bytes)} from {escape(str(folder))}")


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):,.1f} MB"


def register(app: typer.Typer) -> None:
    """Add ``warm``, ``cache info``/``cache clear`` and ``vllm-command`` to the main app."""
    app.command("warm", short_help="Warm the warm set (capped) and report per prefix whether it cached.")(
        handle_errors(warm)
    )
    app.command("vllm-command", short_help="Print the `vllm serve` command line for the built corpus (and a router).")(
        handle_errors(vllm_command)
    )
    group = typer.Typer(
        help="The local backend's prefix KV folder: info, clear.", no_args_is_help=True, rich_markup_mode=None
    )
    group.command("info")(handle_errors(cache_info))
    group.command("clear")(handle_errors(cache_clear))
    app.add_typer(group, name="cache")
