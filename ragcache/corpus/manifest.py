"""The compiled corpus on disk: manifest types and a read-only loader.

Layout of a build directory (all names content-addressed or fixed)::

    manifest.json            canonical JSON (sorted keys), see Manifest
    blocks/<sha256>.txt      one file per block, named by the hash of its bytes
    chunks.jsonl             chunk records for the router, corpus order
    index/                   router index (embedding-model keyed), optional

Block ids are stable names: ``instructions``, ``tools``, ``examples``,
``category:<id>`` (``category:<a>+<b>…`` for small categories merged into one
block, ``/<topic>`` for the topics of a split one) and ``full`` (the
concatenation of every category block, present when it fits the build's budget).
A block's ``category`` is the first category it holds (the router prefers to cut runs where it changes).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from ragcache.errors import CorpusError
from ragcache.hashing import content_hash

__all__ = [
    "MANIFEST_FORMAT",
    "BlockRecord",
    "CategoryRecord",
    "ChunkRecord",
    "CompiledCorpus",
    "DocumentRecord",
    "Manifest",
]

MANIFEST_FORMAT = 1
BlockKind = Literal["instructions", "category", "full", "tools", "examples"]


@dataclass(frozen=True)
class BlockRecord:
    id: str
    kind: BlockKind
    sha256: str
    bytes: int
    tokens: int
    documents: tuple[str, ...] = ()
    category: str | None = None

    @property
    def filename(self) -> str:
        return f"blocks/{self.sha256}.txt"


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    path: str
    title: str
    sha256: str
    category: str
    tokens: int


@dataclass(frozen=True)
class CategoryRecord:
    id: str
    title: str
    block_ids: tuple[str, ...]
    tokens: int


@dataclass(frozen=True)
class ChunkRecord:
    id: str
    doc_id: str
    category: str
    block_id: str
    order: int
    text: str
    tokens: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    name: str
    title: str
    fingerprint: str
    tokenizer: str
    tokens_estimated: bool
    settings: dict[str, Any]
    categories: tuple[CategoryRecord, ...]
    blocks: tuple[BlockRecord, ...]
    documents: tuple[DocumentRecord, ...]
    chunks_sha256: str
    chunk_count: int
    format: int = MANIFEST_FORMAT
    license: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != MANIFEST_FORMAT:
            raise CorpusError(
                f"unsupported manifest format {data.get('format')!r} (expected {MANIFEST_FORMAT}); rebuild the corpus"
            )
        return cls(
            **{k: v for k, v in data.items() if k not in {"categories", "blocks", "documents"}},
            categories=tuple(CategoryRecord(**{**c, "block_ids": tuple(c["block_ids"])}) for c in data["categories"]),
            blocks=tuple(BlockRecord(**{**b, "documents": tuple(b["documents"])}) for b in data["blocks"]),
            documents=tuple(DocumentRecord(**d) for d in data["documents"]),
        )


class CompiledCorpus:
    """A built corpus, read-only. Blocks are read lazily and verified by hash."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest
        self._texts: dict[str, str] = {}

    @classmethod
    def load(cls, root: str | Path) -> CompiledCorpus:
        root = Path(root)
        path = root / "manifest.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise CorpusError(f"{root}: no compiled corpus here (manifest.json missing); run `ragcache build`") from exc
        except (OSError, ValueError) as exc:
            raise CorpusError(f"{path}: unreadable manifest: {exc}") from exc
        try:
            return cls(root, Manifest.from_dict(data))
        except (KeyError, TypeError) as exc:
            raise CorpusError(f"{path}: malformed manifest ({exc}); rebuild the corpus") from exc

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @cached_property
    def blocks(self) -> dict[str, BlockRecord]:
        return {block.id: block for block in self.manifest.blocks}

    @cached_property
    def documents(self) -> dict[str, DocumentRecord]:
        return {doc.id: doc for doc in self.manifest.documents}

    def block(self, block_id: str) -> BlockRecord:
        try:
            return self.blocks[block_id]
        except KeyError:
            raise CorpusError(f"corpus {self.name!r} has no block {block_id!r}") from None

    def block_text(self, block_id: str) -> str:
        """The block's text, checked against its recorded SHA-256."""
        if block_id not in self._texts:
            self._texts[block_id] = self._read_block(self.block(block_id)).decode("utf-8")
        return self._texts[block_id]

    def check_files(self) -> None:
        """Cheap open-time check: every block file is there with its recorded size (a stat each).

        A truncated or missing file fails here, naming it; the SHA-256 itself is checked when
        a block is first read (:meth:`block_text`), so nothing is ever answered from a bad block.
        """
        for record in self.manifest.blocks:
            path = self.root / record.filename
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise _unreadable(path, record, exc) from exc
            if size != record.bytes:
                raise _mismatch(path, record, size)

    def verify(self) -> None:
        """Check every block file against its SHA-256 (reads them all; an edited file fails here, naming it)."""
        for record in self.manifest.blocks:
            if record.id not in self._texts:
                self._read_block(record)

    def _read_block(self, record: BlockRecord) -> bytes:
        path = self.root / record.filename
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _unreadable(path, record, exc) from exc
        if content_hash(data) != record.sha256:  # truncated, edited or torn: never answer from it
            raise _mismatch(path, record, len(data))
        return data

    def category_block_ids(self) -> list[str]:
        """Category blocks (and parts) in corpus order; a block shared by merged small categories once."""
        return list(dict.fromkeys(bid for cat in self.manifest.categories for bid in cat.block_ids))

    @property
    def full_block_id(self) -> str | None:
        return "full" if "full" in self.blocks else None

    @property
    def total_tokens(self) -> int:
        return sum(self.blocks[bid].tokens for bid in self.category_block_ids())

    def documents_of(self, block_ids: tuple[str, ...] | list[str]) -> list[str]:
        """Document ids covered by ``block_ids``, in corpus order, without repeats."""
        seen: dict[str, None] = {}
        for bid in block_ids:
            for doc in self.block(bid).documents:
                seen.setdefault(doc, None)
        return list(seen)

    @cached_property
    def chunks(self) -> list[ChunkRecord]:
        path = self.root / "chunks.jsonl"
        if not path.exists():
            return []
        return [ChunkRecord(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _unreadable(path: Path, record: BlockRecord, exc: OSError) -> CorpusError:
    return CorpusError(f"{path}: cannot read block {record.id!r} ({exc.strerror or exc}); rebuild the corpus")


def _mismatch(path: Path, record: BlockRecord, size: int) -> CorpusError:
    return CorpusError(
        f"{path}: block {record.id!r} does not match its SHA-256 ({size} of {record.bytes} bytes); rebuild the corpus"
    )
