"""What the router decides, as plain frozen data (no heavy imports here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ragcache.hashing import chain_hash

__all__ = ["Route", "RouteMode", "Snippet"]

RouteMode = Literal["full", "category", "stack"]


@dataclass(frozen=True)
class Snippet:
    """A chunk placed after the stable prefix, in the volatile tail."""

    chunk_id: str
    doc_id: str
    text: str
    score: float = 0.0
    tokens: int = 0


@dataclass(frozen=True)
class Route:
    """Which stable blocks a question is answered from, and why.

    ``block_ids`` are corpus block ids in corpus order; the prefix they form is
    one of the router's enumerable prefixes (invariant 4).
    """

    mode: RouteMode
    block_ids: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)
    margin: float | None = None
    sticky: bool = False
    snippets: tuple[Snippet, ...] = ()
    reason: str = ""

    @property
    def prefix_key(self) -> str:
        """Stable name of the prefix this route uses (hash of its block ids)."""
        return chain_hash(self.block_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "blocks": list(self.block_ids),
            "scores": {k: round(v, 4) for k, v in sorted(self.scores.items())},
            "margin": None if self.margin is None else round(self.margin, 4),
            "sticky": self.sticky,
            "snippets": [
                {"chunk_id": s.chunk_id, "doc_id": s.doc_id, "score": round(s.score, 4), "tokens": s.tokens}
                for s in self.snippets
            ],
            "reason": self.reason,
        }
