"""Finding and reading a corpus's documents.

Files are discovered under ``docs/`` with the spec's include/exclude globs and
assigned to categories; then read through LlamaIndex's ``SimpleDirectoryReader``
with ragcache's readers, which are strict where LlamaIndex is lenient: text must
be valid UTF-8 (a bad byte is an error naming the file, never silently dropped),
HTML is reduced to readable text, JSON is re-rendered canonically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core import SimpleDirectoryReader
from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document

from ragcache.corpus.spec import CorpusSpec, glob_match
from ragcache.errors import CorpusError, EmptyCorpusError
from ragcache.hashing import canonical_json

__all__ = ["DOCS_DIR", "SUPPORTED_SUFFIXES", "SkippedFile", "SourceFile", "discover", "read_document", "skipped_files"]

DOCS_DIR = "docs"
DEFAULT_CATEGORY = "general"


@dataclass(frozen=True)
class SourceFile:
    """One document file: ``rel`` is its posix path under ``docs/`` (also its document id)."""

    path: Path
    rel: str
    category: str

    @property
    def spec_path(self) -> str:
        return f"{DOCS_DIR}/{self.rel}"


@dataclass(frozen=True)
class SkippedFile:
    """A file under ``docs/`` that is not part of the corpus, and why (shown by ``ragcache build``)."""

    rel: str
    reason: str


@dataclass(frozen=True)
class LoadedDocument:
    """Readable text (not yet normalized) and a title."""

    text: str
    title: str


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start}); re-save the file as UTF-8"
        ) from exc


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read: {exc.strerror or exc}") from exc


class TextReader(BaseReader):
    """Markdown and plain text, kept as written (LlamaIndex's MarkdownReader drops links)."""

    def load_data(self, file: Path, extra_info: dict[str, Any] | None = None, **_: Any) -> list[Document]:
        text = _decode(_read_bytes(file), file)
        return [Document(text=text, metadata={**(extra_info or {}), "title": _markdown_title(text)})]


class JSONReader(BaseReader):
    """JSON re-rendered with sorted keys, so key order in the file cannot change the block."""

    def load_data(self, file: Path, extra_info: dict[str, Any] | None = None, **_: Any) -> list[Document]:
        text = _decode(_read_bytes(file), file)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{file}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        title = value.get("title", "") if isinstance(value, dict) else ""
        rendered = canonical_json(value, indent=2)
        return [Document(text=rendered, metadata={**(extra_info or {}), "title": str(title)})]


class HTMLReader(BaseReader):
    """HTML reduced to readable text (see :mod:`ragcache.corpus.html`)."""

    def load_data(self, file: Path, extra_info: dict[str, Any] | None = None, **_: Any) -> list[Document]:
        from ragcache.corpus.html import html_to_text

        title, text = html_to_text(_decode(_read_bytes(file), file))
        return [Document(text=text, metadata={**(extra_info or {}), "title": title})]


class PDFReader(BaseReader):
    """PDF text through llama-index-readers-file's pypdf reader, one document per file."""

    def load_data(self, file: Path, extra_info: dict[str, Any] | None = None, **_: Any) -> list[Document]:
        from llama_index.readers.file import PDFReader as LlamaPDFReader

        docs = LlamaPDFReader(return_full_document=True).load_data(Path(file), extra_info=extra_info)
        text = "\n\n".join(doc.text for doc in docs)
        return [Document(text=text, metadata={**(extra_info or {}), "title": _markdown_title(text)})]


_READERS: dict[str, BaseReader] = {
    ".md": TextReader(),
    ".markdown": TextReader(),
    ".txt": TextReader(),
    ".html": HTMLReader(),
    ".htm": HTMLReader(),
    ".json": JSONReader(),
    ".pdf": PDFReader(),
}
SUPPORTED_SUFFIXES = tuple(sorted(_READERS))


def _markdown_title(text: str) -> str:
    for line in text.splitlines()[:40]:
        stripped = line.strip()
        if stripped.startswith("# "):
            return stripped[2:].strip()
    return ""


def read_document(source: SourceFile) -> LoadedDocument:
    """Read one document through SimpleDirectoryReader; any failure names the file."""
    try:
        docs = SimpleDirectoryReader.load_file(
            input_file=source.path,
            file_metadata=lambda _: {"doc_id": source.rel},  # no mtimes: they are not content
            file_extractor=_READERS,
            encoding="utf-8",
            errors="strict",
            raise_on_error=True,
        )
    except CorpusError:
        raise
    except Exception as exc:  # SimpleDirectoryReader wraps reader errors in a bare Exception
        cause = exc.__cause__ or exc
        if isinstance(cause, CorpusError):
            raise cause from None
        raise CorpusError(f"{source.path}: cannot read {source.path.suffix} document: {cause}") from exc
    text = "\n\n".join(doc.text for doc in docs)
    title = next((doc.metadata.get("title", "") for doc in docs if doc.metadata.get("title")), "")
    return LoadedDocument(text=text, title=title or Path(source.rel).stem.replace("_", " "))


def discover(corpus_dir: Path, spec: CorpusSpec) -> list[SourceFile]:
    """Documents in canonical order (category order, then path), each with its category."""
    docs_dir = corpus_dir / DOCS_DIR
    if not docs_dir.is_dir():
        raise EmptyCorpusError(f"{docs_dir}: no docs/ folder; put the corpus documents there")
    rels = _included(docs_dir, spec)
    if not rels:
        raise EmptyCorpusError(
            f"{docs_dir}: no documents match include {list(spec.include)} (supported: {', '.join(SUPPORTED_SUFFIXES)})"
        )
    categories = category_order(spec, rels)
    files = [SourceFile(docs_dir / rel, rel, _category_of(rel, spec, corpus_dir)) for rel in rels]
    _check_globs_match(spec, files, corpus_dir)
    rank = {cat_id: i for i, cat_id in enumerate(categories)}
    return sorted(files, key=lambda f: (rank[f.category], f.rel))


def _included(docs_dir: Path, spec: CorpusSpec) -> list[str]:
    rels = []
    for path in docs_dir.rglob("*"):
        rel = path.relative_to(docs_dir).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or path.is_dir():
            continue
        if not path.is_file():
            raise CorpusError(f"{path}: cannot read: not a regular file (broken link?)")
        if any(glob_match(g, rel) for g in spec.include) and not any(glob_match(g, rel) for g in spec.exclude):
            if path.suffix.lower() not in _READERS:
                raise CorpusError(
                    f"{path}: included but {path.suffix or 'no suffix'} is not a supported document "
                    f"type ({', '.join(SUPPORTED_SUFFIXES)}); exclude it in corpus.yaml"
                )
            rels.append(rel)
    return sorted(rels)


def skipped_files(corpus_dir: Path, spec: CorpusSpec) -> list[SkippedFile]:
    """Files under ``docs/`` the build leaves out, in path order: hidden, excluded, or matched by no include glob."""
    docs_dir = Path(corpus_dir) / DOCS_DIR
    out = []
    for path in sorted(docs_dir.rglob("*")) if docs_dir.is_dir() else []:
        rel = path.relative_to(docs_dir).as_posix()
        if path.is_dir() or any(part.startswith(".") for part in rel.split("/")[:-1]):
            continue
        if rel.split("/")[-1].startswith("."):
            out.append(SkippedFile(rel, "hidden file"))
        elif any(glob_match(g, rel) for g in spec.exclude):
            out.append(SkippedFile(rel, "excluded in corpus.yaml"))
        elif not any(glob_match(g, rel) for g in spec.include):
            if path.suffix.lower() not in _READERS:
                out.append(SkippedFile(rel, f"unsupported type {path.suffix or '(no suffix)'}"))
            else:
                out.append(SkippedFile(rel, "matches no include glob in corpus.yaml"))
    return sorted(out, key=lambda f: f.rel)


def category_order(spec: CorpusSpec, rels: list[str]) -> list[str]:
    """Category ids in corpus order: as written in the spec, else top-level folders sorted."""
    if spec.categories:
        return [c.id for c in spec.categories]
    return sorted({_default_category(rel) for rel in rels})


def _default_category(rel: str) -> str:
    return rel.split("/", 1)[0].lower() if "/" in rel else DEFAULT_CATEGORY


def _category_of(rel: str, spec: CorpusSpec, corpus_dir: Path) -> str:
    if not spec.categories:
        return _default_category(rel)
    for category in spec.categories:
        if any(glob_match(g, rel) for g in category.globs):
            return category.id
    raise CorpusError(
        f"{corpus_dir / DOCS_DIR / rel}: matches no category's globs in "
        f"{corpus_dir / 'corpus.yaml'}; add a glob for it or exclude it"
    )


def _check_globs_match(spec: CorpusSpec, files: list[SourceFile], corpus_dir: Path) -> None:
    """A glob that matches nothing is almost always a typo'd or unknown category folder."""
    for i, category in enumerate(spec.categories):
        for j, glob in enumerate(category.globs):
            if not any(glob_match(glob, f.rel) for f in files):
                raise CorpusError(
                    f"{corpus_dir / 'corpus.yaml'}: categories[{i}].globs[{j}] {glob!r} "
                    f"(category {category.id!r}) matches no document under docs/"
                )
