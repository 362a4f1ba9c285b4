"""The topic lock: which documents sit in which topic, kept from one build to the next.

A fresh clustering (``topics.py``) of a slightly different corpus can move many
documents between topics, and every block that moves is a cache miss for every
user of it. So a build writes its assignment to ``<build>/topics.json`` and the
next build of the same folder starts from it (docs/architecture.md, "Topics that
stay put"):

- an unchanged document stays in its topic (and so in its block);
- a new document joins the nearest topic of its group (TF-IDF cosine to the
  topic's centroid, ties to the earlier topic);
- a deleted document leaves its topic (an emptied topic disappears);
- a topic that outgrows the block budget is bisected, and only it: its children
  are numbered ``<id>.1``, ``<id>.2`` (a group's single topic ``""`` → ``1``, ``2``).

``ragcache build --retopic`` ignores the lock and clusters afresh. Everything is a
function of the documents and the previous lock: no clock, randomness or paths.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragcache.corpus.topics import _norm, doc_vectors, topic_leaves
from ragcache.hashing import canonical_json

__all__ = ["LOCK_FILE", "LOCK_FORMAT", "GroupLock", "Topic", "TopicLock", "assign_topics", "child_id"]

LOCK_FILE = "topics.json"
LOCK_FORMAT = 1


@dataclass(frozen=True)
class Topic:
    """One topic of a group: a stable id (``""`` when the group is one topic) and its documents in corpus order."""

    id: str
    documents: tuple[str, ...]


@dataclass(frozen=True)
class GroupLock:
    """A group of categories that share blocks, and its topics in canonical order."""

    categories: tuple[str, ...]
    topics: tuple[Topic, ...]


@dataclass(frozen=True)
class TopicLock:
    """Every group's topics; written as canonical JSON beside the build's manifest."""

    groups: tuple[GroupLock, ...]

    def group(self, categories: Sequence[str]) -> GroupLock | None:
        """The locked group holding exactly ``categories``, if any."""
        return next((g for g in self.groups if g.categories == tuple(categories)), None)

    def to_json(self) -> str:
        data = {
            "format": LOCK_FORMAT,
            "groups": [
                {
                    "categories": list(g.categories),
                    "topics": [{"id": t.id, "documents": list(t.documents)} for t in g.topics],
                }
                for g in self.groups
            ],
        }
        return canonical_json(data, indent=2) + "\n"

    @classmethod
    def read(cls, path: Path) -> TopicLock | None:
        """The lock at ``path``; None when missing, of another format or unreadable (the build then clusters afresh)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != LOCK_FORMAT:
                return None
            return cls(
                tuple(
                    GroupLock(
                        tuple(str(c) for c in g["categories"]),
                        tuple(Topic(str(t["id"]), tuple(str(d) for d in t["documents"])) for t in g["topics"]),
                    )
                    for g in data["groups"]
                )
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


def child_id(parent: str, number: int) -> str:
    """The id of a split topic's ``number``-th child."""
    return f"{parent}.{number}" if parent else str(number)


def assign_topics(
    doc_ids: Sequence[str], texts: Sequence[str], costs: Sequence[int], budget: int, locked: GroupLock | None
) -> list[tuple[str, list[int]]]:
    """The group's topics as (id, document indexes ascending), in canonical order.

    Without a lock: one topic ``""`` when the group fits ``budget``, else the leaves of
    ``topic_leaves`` numbered 1…n. With one: the module docstring's rules.
    """
    weights = np.asarray(costs, dtype=np.int64)
    if locked is None or not any(d in set(doc_ids) for t in locked.topics for d in t.documents):
        if int(weights.sum()) <= budget:
            return [("", list(range(len(doc_ids))))]
        return [(str(n), leaf) for n, leaf in enumerate(topic_leaves(texts, costs, budget), start=1)]
    position = {d: i for i, d in enumerate(doc_ids)}
    topics = [(t.id, sorted(position[d] for d in t.documents if d in position)) for t in locked.topics]
    topics = [(tid, members) for tid, members in topics if members]
    placed = {i for _, members in topics for i in members}
    fresh = [i for i in range(len(doc_ids)) if i not in placed]
    if fresh:
        _join_nearest(texts, topics, fresh)
    out: list[tuple[str, list[int]]] = []
    for tid, members in topics:
        if len(members) > 1 and int(weights[members].sum()) > budget:
            leaves = topic_leaves([texts[i] for i in members], [costs[i] for i in members], budget)
            out += [(child_id(tid, n), [members[j] for j in leaf]) for n, leaf in enumerate(leaves, start=1)]
        else:
            out.append((tid, members))
    return out


def _join_nearest(texts: Sequence[str], topics: list[tuple[str, list[int]]], fresh: list[int]) -> None:
    """Put each new document into the topic whose centroid is nearest (in place; ties: earlier topic)."""
    vectors = doc_vectors(texts)
    scores = []
    for _, members in topics:
        mask = np.zeros(vectors.rows, dtype=bool)
        mask[members] = True
        centroid = vectors.centroid(mask)
        scores.append(vectors.dots(centroid)[fresh] / _norm(centroid))
    best = np.argmax(np.vstack(scores), axis=0)  # argmax keeps the first of equal scores
    for i, t in zip(fresh, best, strict=True):
        topics[int(t)][1].append(i)
    for _, members in topics:
        members.sort()
