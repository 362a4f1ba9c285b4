"""Laying documents out into prefix blocks.

A block is plain text. Each document is introduced by a stable header naming
its id (its path under ``docs/``) and title, so an answer can cite it; each
category's documents sit inside a ``<category>`` wrapper. Categories smaller
than ``min_block_tokens`` share a block with their neighbour; a category larger
than ``max_block_tokens`` is cut into topics (``topics.py``: deterministic
balanced bisection of its documents), kept from build to build by the topic lock
(``topic_lock.py``). A block is named after everything it holds and its topic:
``category:<id>`` (or ``category:<id>+<id>…`` for merged small categories), then
``/<topic>`` when the group has several topics (``/3``, ``/3.2`` after a split);
inside a block documents keep path order, and a document larger than a block is
cut, in document order, into parts of its own (``/<topic>-1``, ``-2`` …). The
``full`` block is the concatenation of the category blocks' texts, so a category
route and the full route share bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ragcache.corpus.docwork import DocWork
from ragcache.corpus.spec import BuildSettings
from ragcache.corpus.tokens import Tokenizer
from ragcache.corpus.topic_lock import GroupLock, Topic, TopicLock, assign_topics

__all__ = ["CategoryDocs", "PlannedBlock", "plan_category_blocks", "render_document"]


@dataclass(frozen=True)
class CategoryDocs:
    """A category and its documents (id, work) in corpus order."""

    id: str
    title: str
    docs: tuple[tuple[str, DocWork], ...]

    @property
    def tokens(self) -> int:
        return sum(work.tokens for _, work in self.docs)


@dataclass
class PlannedBlock:
    """A category block (or part) before it is written: its sections and where each piece went."""

    id: str
    category: str
    part: str | None
    sections: list[tuple[CategoryDocs, list[str]]] = field(default_factory=list)  # (category, rendered docs)
    pieces: list[tuple[str, int]] = field(default_factory=list)  # (doc id, piece index)

    @property
    def documents(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(doc_id for doc_id, _ in self.pieces))

    def text(self) -> str:
        out = []
        for category, rendered in self.sections:
            part = f' part="{self.part}"' if self.part is not None else ""
            out.append(f'<category id="{category.id}" title="{_attr(category.title)}"{part}>\n')
            out.append("\n".join(rendered))
            out.append("</category>\n")
        return "".join(out)


def render_document(doc_id: str, title: str, text: str, part: int | None = None) -> str:
    """One document (or one piece of a long one) with its citation header."""
    part_attr = f' part="{part}"' if part is not None else ""
    return f'<document id="{_attr(doc_id)}" title="{_attr(title)}"{part_attr}>\n{text}</document>\n'


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace("\n", " ")


def plan_category_blocks(
    categories: list[CategoryDocs], settings: BuildSettings, tokenizer: Tokenizer, lock: TopicLock | None = None
) -> tuple[list[PlannedBlock], TopicLock]:
    """Group small categories, then cut large groups into topics (kept from ``lock``); canonical order throughout.

    Returns the blocks and the lock for the next build.
    """
    blocks: list[PlannedBlock] = []
    groups: list[GroupLock] = []
    for group in _groups(categories, settings.min_block_tokens, lock):
        locked = lock.group([c.id for c in group]) if lock is not None else None
        planned, topics = _plan_group(group, settings.max_block_tokens, tokenizer, locked)
        blocks.extend(planned)
        groups.append(GroupLock(tuple(c.id for c in group), topics))
    return blocks, TopicLock(tuple(groups))


def _groups(categories: list[CategoryDocs], min_tokens: int, lock: TopicLock | None) -> list[list[CategoryDocs]]:
    """The locked grouping while the set of categories is the same, else small neighbours merged afresh."""
    if lock is not None and sorted(c for g in lock.groups for c in g.categories) == sorted(c.id for c in categories):
        by_id = {c.id: c for c in categories}
        return [[by_id[c] for c in g.categories] for g in lock.groups]
    return _merge_small(categories, min_tokens)


def _merge_small(categories: list[CategoryDocs], min_tokens: int) -> list[list[CategoryDocs]]:
    groups: list[list[CategoryDocs]] = []
    for category in categories:
        if groups and (sum(c.tokens for c in groups[-1]) < min_tokens or category.tokens < min_tokens):
            groups[-1].append(category)
        else:
            groups.append([category])
    return groups


@dataclass(frozen=True)
class _Doc:
    """One document of a group, rendered piece by piece with its citation headers."""

    category: CategoryDocs
    doc_id: str
    work: DocWork
    rendered: tuple[tuple[str, int], ...]  # (rendered piece, tokens)

    @property
    def cost(self) -> int:
        return sum(tokens for _, tokens in self.rendered)


def _plan_group(
    group: list[CategoryDocs], max_tokens: int, tokenizer: Tokenizer, locked: GroupLock | None
) -> tuple[list[PlannedBlock], tuple[Topic, ...]]:
    """The group's blocks, one per topic (or several for a document larger than a block), and its topics."""
    budget = max_tokens - 32 * len(group)  # category wrappers and token merges at the seams
    docs = [_render(category, doc_id, work, tokenizer) for category in group for doc_id, work in category.docs]
    texts = [f"{d.work.title}\n{d.work.text}" for d in docs]
    topics = assign_topics([d.doc_id for d in docs], texts, [d.cost for d in docs], budget, locked)
    base = "category:" + "+".join(c.id for c in group)
    blocks: list[PlannedBlock] = []
    for tid, members in topics:
        parts = _pack([docs[i] for i in members], base, group[0].id, budget)
        for number, part in enumerate(parts, start=1):
            label = tid if len(parts) == 1 else f"{tid}-{number}" if tid else str(number)
            part.id, part.part = (f"{base}/{label}", label) if label else (base, None)
        blocks.extend(parts)
    return blocks, tuple(Topic(tid, tuple(docs[i].doc_id for i in members)) for tid, members in topics)


def _render(category: CategoryDocs, doc_id: str, work: DocWork, tokenizer: Tokenizer) -> _Doc:
    many = len(work.pieces) > 1
    rendered = []
    for index, piece in enumerate(work.pieces):
        text = render_document(doc_id, work.title, piece.text, index + 1 if many else None)
        rendered.append((text, tokenizer.count(text) + 1))
    return _Doc(category, doc_id, work, tuple(rendered))


def _pack(docs: list[_Doc], base: str, category_id: str, budget: int) -> list[PlannedBlock]:
    """Greedy packing of rendered document pieces, in order, into parts of at most ``budget``."""
    parts: list[PlannedBlock] = [PlannedBlock(base, category_id, None)]
    size = 0
    for doc in docs:
        for index, (rendered, cost) in enumerate(doc.rendered):
            current = parts[-1]
            if current.pieces and size + cost > budget:
                current = PlannedBlock(base, category_id, None)
                parts.append(current)
                size = 0
            if not current.sections or current.sections[-1][0] is not doc.category:
                current.sections.append((doc.category, []))
            current.sections[-1][1].append(rendered)
            current.pieces.append((doc.doc_id, index))
            size += cost
    return parts
