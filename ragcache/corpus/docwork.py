"""Per-document work (read → normalize → split → chunk), cached by content hash.

Reading HTML/PDF, tokenizing and chunking dominate build time, and they depend
only on a document's bytes, its path and the build settings. Each result is a
small JSON file under ``<cache_home>/docwork/`` named by the hash of exactly
those inputs, so an unchanged rebuild reads the documents' bytes and nothing
else. The cache is an accelerator only: deleting it changes no output byte.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from llama_index.core.node_parser import SentenceSplitter

from ragcache.corpus.normalize import normalize_text
from ragcache.corpus.sources import SourceFile, read_document
from ragcache.corpus.spec import BuildSettings
from ragcache.corpus.tokens import Tokenizer
from ragcache.hashing import canonical_json, content_hash

__all__ = ["DocWork", "Piece", "WorkCache", "piece_budget"]

WORK_VERSION = 3  # bump when a reader's output changes
_HEADER_ALLOWANCE = 96  # tokens kept free in a block part for document and category headers


@dataclass(frozen=True)
class Piece:
    """A run of a document that goes into one block; long documents have several."""

    text: str
    tokens: int
    chunks: tuple[tuple[str, int], ...]  # (chunk text, tokens) for the router


@dataclass(frozen=True)
class DocWork:
    """Everything the compiler needs from one document."""

    sha256: str
    title: str
    text: str
    tokens: int
    pieces: tuple[Piece, ...]

    @classmethod
    def from_dict(cls, data: dict) -> DocWork:
        pieces = tuple(Piece(p["text"], p["tokens"], tuple((c, n) for c, n in p["chunks"])) for p in data["pieces"])
        return cls(data["sha256"], data["title"], data["text"], data["tokens"], pieces)


def piece_budget(settings: BuildSettings) -> int:
    """Largest piece of one document that still fits a block part with its headers."""
    return settings.max_block_tokens - _HEADER_ALLOWANCE


class WorkCache:
    """Computes :class:`DocWork`, reusing earlier results from ``root`` when inputs match."""

    def __init__(self, root: Path, settings: BuildSettings, tokenizer: Tokenizer) -> None:
        self.root = root
        self.settings = settings
        self.tokenizer = tokenizer
        self.reused = 0
        self._splitter = SentenceSplitter(
            chunk_size=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap, tokenizer=tokenizer.encode
        )
        self._settings_key = canonical_json(
            {
                "version": WORK_VERSION,
                "tokenizer": tokenizer.sha256,
                "chunk_tokens": settings.chunk_tokens,
                "chunk_overlap": settings.chunk_overlap,
                "piece_budget": piece_budget(settings),
            }
        )

    def get(self, source: SourceFile, data: bytes) -> DocWork:
        """The work for ``source`` whose current bytes are ``data``."""
        sha = content_hash(data)
        key = content_hash(f"{self._settings_key}\n{source.rel}\n{sha}")
        path = self.root / key[:2] / f"{key}.json"
        try:
            work = DocWork.from_dict(json.loads(path.read_text(encoding="utf-8")))
            self.reused += 1
            return work
        except (OSError, ValueError, KeyError, TypeError):
            pass
        work = self._compute(source, sha)
        self._store(path, work)
        return work

    def _compute(self, source: SourceFile, sha: str) -> DocWork:
        loaded = read_document(source)
        text = normalize_text(loaded.text)
        title = " ".join(loaded.title.split())
        pieces = []
        for piece in split_text(text, piece_budget(self.settings), self.tokenizer):
            chunks = [normalize_text(c) for c in self._splitter.split_text(piece)]
            chunks = [c for c in chunks if c]
            counts = self.tokenizer.count_many(chunks) if chunks else []
            pieces.append(Piece(piece, self.tokenizer.count(piece), tuple(zip(chunks, counts, strict=True))))
        return DocWork(sha, title, text, self.tokenizer.count(text), tuple(pieces))

    def _store(self, path: Path, work: DocWork) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(canonical_json(asdict(work)))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs speed


def split_text(text: str, budget: int, tokenizer: Tokenizer) -> list[str]:
    """Split ``text`` at paragraph (else line) boundaries into pieces of at most ~``budget`` tokens."""
    if not text or tokenizer.count(text) <= budget:
        return [text] if text else []
    units = _units(text, budget, tokenizer)
    counts = tokenizer.count_many(units)
    target = budget
    while True:  # unit counts do not add up exactly (tokens merge at the seams): tighten until every piece fits
        pieces = _pack_units(units, counts, target)
        if target < budget // 2 or all(tokenizer.count(p) <= budget for p in pieces):
            return pieces
        target = target * 9 // 10


def _pack_units(units: list[str], counts: list[int], budget: int) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for unit, count in zip(units, counts, strict=True):
        if current and size + count > budget:
            pieces.append(normalize_text("".join(current)))
            current, size = [], 0
        current.append(unit)
        size += count
    if current:
        pieces.append(normalize_text("".join(current)))
    return [p for p in pieces if p]


def _units(text: str, budget: int, tokenizer: Tokenizer) -> list[str]:
    """Paragraphs (with their separators); a paragraph over budget becomes lines, a line over budget slices."""
    units: list[str] = []
    for para in text.split("\n\n"):
        para += "\n\n"
        if tokenizer.count(para) <= budget:
            units.append(para)
            continue
        for line in para.split("\n"):
            line += "\n"
            n = tokenizer.count(line)
            if n <= budget:
                units.append(line)
                continue
            step = max(1, len(line) * budget // (n + 1))
            units.extend(line[i : i + step] for i in range(0, len(line), step))
    return units
