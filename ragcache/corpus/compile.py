"""Compile a corpus folder into content-addressed prefix blocks (see manifest.py).

``build_corpus`` reads ``corpus.yaml`` and ``docs/``, normalizes every document,
lays documents out into blocks in canonical order, chunks them for the router
and writes the build into a temporary folder beside the target, which replaces
the target only when everything (including caller ``steps``) succeeded. Nothing
written depends on the clock, file-system order, mtimes or absolute paths.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ragcache.corpus.blocks import CategoryDocs, PlannedBlock, plan_category_blocks
from ragcache.corpus.buildlock import build_lock
from ragcache.corpus.docwork import DocWork, WorkCache
from ragcache.corpus.manifest import (
    BlockRecord,
    CategoryRecord,
    ChunkRecord,
    CompiledCorpus,
    DocumentRecord,
    Manifest,
)
from ragcache.corpus.normalize import normalize_text
from ragcache.corpus.sources import SkippedFile, SourceFile, discover, skipped_files
from ragcache.corpus.spec import CorpusSpec, load_spec
from ragcache.corpus.store import default_build_dir
from ragcache.corpus.tokens import Tokenizer, get_tokenizer
from ragcache.corpus.topic_lock import LOCK_FILE, TopicLock
from ragcache.errors import CorpusError, EmptyCorpusError
from ragcache.hashing import canonical_json, chain_hash, content_hash

__all__ = ["BlockChanges", "BuildResult", "BuildStep", "ProgressFn", "build_corpus"]

BuildStep = Callable[[Path, CompiledCorpus, "Path | None"], None]
ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class BlockChanges:
    """Which blocks a build added, changed (same id, other bytes) and removed against the build it replaced."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.added) + len(self.changed) + len(self.removed)

    @classmethod
    def between(cls, before: dict[str, str], after: dict[str, str]) -> BlockChanges:
        """From block id → sha256 of the previous and the new build (ids in the new build's order)."""
        return cls(
            tuple(b for b in after if b not in before),
            tuple(b for b in after if b in before and before[b] != after[b]),
            tuple(b for b in before if b not in after),
        )


@dataclass(frozen=True)
class BuildResult:
    """A finished build, what it cost, and what it changed."""

    corpus: CompiledCorpus
    build_dir: Path
    seconds: float
    documents: int
    document_tokens: int
    reused_documents: int
    changes: BlockChanges | None = None  # None: there was no previous build
    retopic: bool = False
    skipped: tuple[SkippedFile, ...] = ()

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds if self.seconds > 0 else float("inf")

    @property
    def tokens_per_s(self) -> float:
        return self.document_tokens / self.seconds if self.seconds > 0 else float("inf")


def build_corpus(
    corpus_dir: str | Path,
    out: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    steps: Sequence[BuildStep] = (),
    work_dir: str | Path | None = None,
    wait: bool = True,
    retopic: bool = False,
) -> BuildResult:
    """Build ``corpus_dir`` into ``out`` (default ``<corpus>/.ragcache/build``), atomically.

    One build at a time per ``out`` (see buildlock.py): a second one waits, or
    raises CorpusError naming the folder when ``wait`` is False. Topics are kept
    from the previous build's topic lock unless ``retopic`` (topic_lock.py).
    """
    started = time.perf_counter()
    corpus_dir = Path(corpus_dir)
    out = Path(out) if out is not None else default_build_dir(corpus_dir)
    _check_replaceable(out)
    spec = load_spec(corpus_dir)
    tokenizer = get_tokenizer(spec.build.tokenizer, progress)
    sources = discover(corpus_dir, spec)
    cache = WorkCache(Path(work_dir) if work_dir else _default_work_dir(), spec.build, tokenizer)
    works = _read_all(sources, cache, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(out, wait=wait, progress=progress):
        _check_replaceable(out)  # again: the build we waited for may have changed it
        before = _previous_blocks(out)
        lock = None if retopic else TopicLock.read(out / LOCK_FILE)
        _write_and_swap(out, steps, lambda root: _write_build(root, spec, tokenizer, sources, works, lock))
    corpus = CompiledCorpus.load(out)
    after = {b.id: b.sha256 for b in corpus.manifest.blocks}
    return BuildResult(
        corpus=corpus,
        build_dir=out,
        seconds=time.perf_counter() - started,
        documents=len(works),
        document_tokens=sum(w.tokens for w in works),
        reused_documents=cache.reused,
        changes=BlockChanges.between(before, after) if before is not None else None,
        retopic=retopic,
        skipped=tuple(skipped_files(corpus_dir, spec)),
    )


def _previous_blocks(out: Path) -> dict[str, str] | None:
    """Block id → sha256 of the build at ``out``, or None when there is none (or it is unreadable)."""
    try:
        return {b.id: b.sha256 for b in CompiledCorpus.load(out).manifest.blocks}
    except (CorpusError, OSError, ValueError):
        return None


def _write_and_swap(out: Path, steps: Sequence[BuildStep], write: Callable[[Path], None]) -> None:
    """Write into a temporary folder beside ``out``, run ``steps``, swap; on any failure ``out`` is untouched."""
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        write(tmp)
        compiled = CompiledCorpus.load(tmp)
        previous = out if (out / "manifest.json").exists() else None
        for step in steps:
            step(tmp, compiled, previous)
        _swap(tmp, out)
    except OSError as exc:  # e.g. the disk is full
        raise CorpusError(f"{out}: cannot write the build ({exc.filename or tmp}: {exc.strerror or exc})") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _default_work_dir() -> Path:
    from ragcache.models import cache_home

    return cache_home() / "docwork"


def _check_replaceable(out: Path) -> None:
    """Never swap away a folder that is not a previous build."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").exists())):
        raise CorpusError(f"{out}: exists and is not a ragcache build (no manifest.json); choose another --out")


def _read_all(sources: list[SourceFile], cache: WorkCache, progress: ProgressFn | None) -> list[DocWork]:
    works = []
    for done, source in enumerate(sources, start=1):
        try:
            data = source.path.read_bytes()
        except OSError as exc:
            raise CorpusError(f"{source.path}: cannot read: {exc.strerror or exc}") from exc
        works.append(cache.get(source, data))
        if progress:
            progress("reading documents", done, len(sources))
    if not any(w.text for w in works):
        raise EmptyCorpusError(f"{sources[0].path.parent}: every document is empty")
    return works


def _write_build(
    root: Path,
    spec: CorpusSpec,
    tokenizer: Tokenizer,
    sources: list[SourceFile],
    works: list[DocWork],
    lock: TopicLock | None,
) -> None:
    """Write blocks/, chunks.jsonl, topics.json (the topic lock) and manifest.json into ``root``."""
    (root / "blocks").mkdir()
    categories = _category_docs(spec, sources, works)
    planned, new_lock = plan_category_blocks(categories, spec.build, tokenizer, lock)
    (root / LOCK_FILE).write_text(new_lock.to_json(), encoding="utf-8")
    blocks = [b for b in _stable_blocks(spec, tokenizer, root) if b is not None]
    category_blocks = [
        _write_block(root, tokenizer, p.text(), p.id, "category", p.documents, p.category) for p in planned
    ]
    blocks += category_blocks
    full_text = "".join(_read_text(root, b) for b in category_blocks)
    full_tokens = tokenizer.count(full_text)
    if full_tokens <= spec.build.full_budget_tokens:
        documents = tuple(dict.fromkeys(d for b in category_blocks for d in b.documents))
        blocks.append(_write_block(root, tokenizer, full_text, "full", "full", documents, None))
    chunks_bytes = _chunk_lines(planned, sources, works).encode("utf-8")
    (root / "chunks.jsonl").write_bytes(chunks_bytes)
    manifest = Manifest(
        name=spec.name,
        title=spec.title or spec.name,
        fingerprint=chain_hash(b.sha256 for b in blocks),
        tokenizer=tokenizer.name,
        tokens_estimated=tokenizer.estimated,
        settings={**spec.build.model_dump(), "tokenizer": tokenizer.name, "tokenizer_sha256": tokenizer.sha256},
        categories=_category_records(categories, planned),
        blocks=tuple(blocks),
        documents=tuple(
            DocumentRecord(s.rel, s.spec_path, w.title, w.sha256, s.category, w.tokens)
            for s, w in zip(sources, works, strict=True)
        ),
        chunks_sha256=content_hash(chunks_bytes),
        chunk_count=chunks_bytes.count(b"\n"),
        license=spec.license,
        extra={"tools": [dict(t) for t in spec.tools]} if spec.tools else {},
    )
    (root / "manifest.json").write_text(canonical_json(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")


def _category_docs(spec: CorpusSpec, sources: list[SourceFile], works: list[DocWork]) -> list[CategoryDocs]:
    titles = {c.id: c.title for c in spec.categories}
    grouped: dict[str, list[tuple[str, DocWork]]] = {}
    for source, work in zip(sources, works, strict=True):
        if work.text:
            grouped.setdefault(source.category, []).append((source.rel, work))
    return [
        CategoryDocs(cid, titles.get(cid) or cid.replace("_", " ").title(), tuple(docs))
        for cid, docs in grouped.items()
    ]


def _stable_blocks(spec: CorpusSpec, tokenizer: Tokenizer, root: Path) -> list[BlockRecord | None]:
    """Instructions, tools (canonical JSON) and examples, in prompt order."""
    tools = canonical_json([dict(t) for t in spec.tools], indent=2) + "\n" if spec.tools else ""
    examples = "".join(f"Question: {e.question.strip()}\nAnswer: {e.answer.strip()}\n\n" for e in spec.examples)
    return [
        _write_block(root, tokenizer, normalize_text(spec.instructions), "instructions", "instructions", (), None),
        _write_block(root, tokenizer, tools, "tools", "tools", (), None) if tools else None,
        _write_block(root, tokenizer, normalize_text(examples), "examples", "examples", (), None) if examples else None,
    ]


def _write_block(
    root: Path,
    tokenizer: Tokenizer,
    text: str,
    block_id: str,
    kind: str,
    documents: tuple[str, ...],
    category: str | None,
) -> BlockRecord:
    data = text.encode("utf-8")
    sha = content_hash(data)
    record = BlockRecord(block_id, kind, sha, len(data), tokenizer.count(text), documents, category)  # type: ignore[arg-type]
    (root / record.filename).write_bytes(data)
    return record


def _read_text(root: Path, block: BlockRecord) -> str:
    return (root / block.filename).read_text(encoding="utf-8")


def _chunk_lines(planned: list[PlannedBlock], sources: list[SourceFile], works: list[DocWork]) -> str:
    """chunks.jsonl: one canonical JSON line per chunk, corpus order, each tied to its block."""
    by_id = {s.rel: (s, w) for s, w in zip(sources, works, strict=True)}
    lines = []
    order: dict[str, int] = {}
    for block in planned:
        for doc_id, index in block.pieces:
            source, work = by_id[doc_id]
            for text, tokens in work.pieces[index].chunks:
                n = order.get(doc_id, 0)
                order[doc_id] = n + 1
                chunk = ChunkRecord(
                    f"{doc_id}#{n}", doc_id, source.category, block.id, n, text, tokens, content_hash(text)
                )
                lines.append(canonical_json(asdict(chunk)) + "\n")
    return "".join(lines)


def _category_records(categories: list[CategoryDocs], planned: list[PlannedBlock]) -> tuple[CategoryRecord, ...]:
    block_ids: dict[str, list[str]] = {}
    for block in planned:
        for category, _ in block.sections:
            block_ids.setdefault(category.id, [])
            if block.id not in block_ids[category.id]:
                block_ids[category.id].append(block.id)
    return tuple(CategoryRecord(c.id, c.title, tuple(block_ids[c.id]), c.tokens) for c in categories)


def _swap(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp``; if the final rename fails, the previous build is put back."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "build")
    try:
        os.replace(tmp, out)
    except OSError as exc:
        if old is not None:
            os.replace(old / "build", out)
        raise CorpusError(f"{out}: cannot move the new build into place: {exc}") from exc
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
