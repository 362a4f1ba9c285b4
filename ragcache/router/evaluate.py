"""Router evaluation: evidence recall, distinct prefixes and prompt tokens, against top-k retrieval.

A QA file is JSON lines ``{"id", "question", "gold": [doc ids]}``. A question is a
hit when one of its gold documents is inside the prompt: in a chosen block or a
tail snippet for the router, among the retrieved chunks for top-k. Top-k gets,
question by question, exactly the corpus tokens the router's prompt carried (the
same prompt-token budget), filled with the best chunks in score order.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragcache.errors import CorpusError

if TYPE_CHECKING:
    from ragcache.corpus.manifest import CompiledCorpus
    from ragcache.router.policy import HybridRouter

__all__ = ["QAItem", "RouterEval", "StrategyStats", "evaluate_router", "load_qa"]


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    gold: tuple[str, ...]


@dataclass
class StrategyStats:
    """One strategy's figures over a QA set."""

    name: str
    hits: int = 0
    questions: int = 0
    prefixes: set[tuple[str, ...]] = field(default_factory=set)
    tokens: list[int] = field(default_factory=list)

    def add(self, hit: bool, prefix: tuple[str, ...], tokens: int) -> None:
        self.hits += hit
        self.questions += 1
        self.prefixes.add(prefix)
        self.tokens.append(tokens)

    @property
    def recall(self) -> float:
        return self.hits / self.questions if self.questions else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "questions": self.questions,
            "hits": self.hits,
            "evidence_recall": round(self.recall, 4),
            "distinct_prefixes": len(self.prefixes),
            "prompt_tokens_mean": round(statistics.fmean(self.tokens), 1) if self.tokens else 0.0,
            "prompt_tokens_median": statistics.median(self.tokens) if self.tokens else 0,
        }


@dataclass
class RouterEval:
    """The router against top-k baselines, plus what bounds the router's prefix count."""

    corpus: str
    mode: str
    budget: int
    categories: int
    category_blocks: int
    router: StrategyStats
    baselines: list[StrategyStats]
    modes: dict[str, int]
    stacks_used: int

    @property
    def prefix_bound(self) -> int:
        """Single blocks (split categories count each part) plus the canonical pairs actually used."""
        return self.category_blocks + self.stacks_used

    def to_dict(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus,
            "mode": self.mode,
            "budget_tokens": self.budget,
            "categories": self.categories,
            "category_blocks": self.category_blocks,
            "stacks_used": self.stacks_used,
            "prefix_bound": self.prefix_bound,
            "route_modes": dict(sorted(self.modes.items())),
            "router": self.router.to_dict(),
            "baselines": [b.to_dict() for b in self.baselines],
        }


def load_qa(path: str | Path, corpus: CompiledCorpus | None = None) -> list[QAItem]:
    """Read a QA file; with ``corpus``, every gold document must exist in it."""
    path = Path(path)
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read QA file: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(QAItem(str(row.get("id", number)), str(row["question"]), tuple(row["gold"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorpusError(f"{path}:{number}: expected {{'question': str, 'gold': [doc ids]}}: {exc}") from exc
    if corpus is not None:
        missing = sorted({g for item in items for g in item.gold} - set(corpus.documents))
        if missing:
            raise CorpusError(f"{path}: gold documents not in corpus {corpus.name!r}: {', '.join(missing[:5])}")
    return items


def evaluate_router(router: HybridRouter, items: list[QAItem]) -> RouterEval:
    """Route every question (no session), then give top-k the same corpus tokens per question."""
    corpus = router.corpus
    chunks = corpus.chunks
    ours = StrategyStats("router")
    fused_k = StrategyStats("top-k (same fused dense+BM25 scores)")
    dense_k = StrategyStats("top-k (dense only)")
    modes: dict[str, int] = {}
    stacks: set[tuple[str, ...]] = set()
    for item in items:
        route = router.route(item.question)
        blocks = tuple(b for b in route.block_ids)
        docs = set(corpus.documents_of(blocks)) | {s.doc_id for s in route.snippets}
        tokens = sum(corpus.block(b).tokens for b in blocks) + sum(s.tokens for s in route.snippets)
        ours.add(bool(docs & set(item.gold)), blocks, tokens)
        modes[route.mode] = modes.get(route.mode, 0) + 1
        if route.mode == "stack":
            stacks.add(blocks)
        if not chunks:
            continue
        scores = router.index.scores(item.question, router.config.dense_weight)
        for stats, values in ((fused_k, scores.fused), (dense_k, scores.dense)):
            picked = _fill(values, [c.tokens for c in chunks], tokens)
            chosen = {chunks[i].doc_id for i in picked}
            stats.add(bool(chosen & set(item.gold)), tuple(chunks[i].id for i in sorted(picked)), tokens)
    return RouterEval(
        corpus=corpus.name,
        mode=router.mode,
        budget=router.budget,
        categories=len(corpus.manifest.categories),
        category_blocks=len(router.blocks),
        router=ours,
        baselines=[fused_k, dense_k] if chunks else [],
        modes=modes,
        stacks_used=len(stacks),
    )


def _fill(values: Any, sizes: list[int], budget: int) -> list[int]:
    """Chunk positions in score order while they fit ``budget`` tokens."""
    picked, used = [], 0
    for i in np.lexsort((np.arange(len(values)), -np.asarray(values, dtype=np.float64))):
        if used + sizes[i] <= budget:
            picked.append(int(i))
            used += sizes[i]
        elif budget - used < 16:
            break
    return picked
