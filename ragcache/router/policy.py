"""The hybrid routing policy: full corpus, else a category block (or a canonical stack of two).

In order:

1. **full** — the whole corpus fits the context budget (window − reserved output −
   history allowance − the other stable blocks): one prefix for every question.
2. **category** — chunks are scored (dense + BM25, fused), each category block gets
   the aggregate of its best chunks, and the best block wins (for a split category
   that is its best part). When the runner-up is within ``stack_margin`` and both
   fit, the route is the **stack** of the two, always in corpus order, so a stack
   shares its first block's bytes with that block's single prefix.
3. **tail snippets** — the best chunks from outside the chosen blocks, within
   ``snippet_tokens``, in corpus order, go in the volatile tail.

Sessions are sticky: a follow-up keeps the previous route's blocks unless another
block beats them by ``sticky_margin``, because switching also throws away the
cached history. Every route is one of :meth:`HybridRouter.prefixes`.
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from ragcache.errors import EmptyCorpusError, RoutingError
from ragcache.prompt import Route, Snippet

if TYPE_CHECKING:
    from ragcache.backends.base import Capabilities
    from ragcache.config import RouterConfig
    from ragcache.corpus.manifest import CompiledCorpus
    from ragcache.router.index import ChunkIndex, QueryScores

__all__ = ["AGGREGATE_WEIGHTS", "SNIPPET_MIN_SHARE", "HybridRouter", "context_budget"]

# A block's score: weighted best chunk scores inside it (best first). The first
# weight dominates so one decisive chunk wins; the rest rewards a block that
# holds several good chunks (a whole relevant document) over a lucky one.
AGGREGATE_WEIGHTS = (0.6, 0.25, 0.15)
_SHOWN_SCORES = 5
# Snippets must score at least this share of the best chunk: the tail is uncached,
# so weak matches are not worth their tokens.
SNIPPET_MIN_SHARE = 0.3


def context_budget(
    corpus: CompiledCorpus, config: RouterConfig, capabilities: Capabilities, reserved_output: int
) -> int:
    """Tokens left for corpus blocks: window − output − history − snippets − the other stable blocks."""
    overhead = sum(b.tokens for b in corpus.manifest.blocks if b.kind in ("instructions", "tools", "examples"))
    return capabilities.context_window - reserved_output - config.history_allowance - config.snippet_tokens - overhead


class HybridRouter:
    """Routes questions to one of a bounded set of stable prefixes (see the module docstring)."""

    def __init__(
        self,
        corpus: CompiledCorpus,
        config: RouterConfig,
        capabilities: Capabilities,
        reserved_output: int,
        *,
        index: ChunkIndex | None = None,
    ) -> None:
        self.corpus = corpus
        self.config = config
        self.budget = context_budget(corpus, config, capabilities, reserved_output)
        self.min_cacheable = capabilities.min_cacheable_tokens
        self.blocks = corpus.category_block_ids()
        self._position = {bid: i for i, bid in enumerate(self.blocks)}
        self._tokens = np.array([corpus.block(b).tokens for b in self.blocks], dtype=np.int64)
        if not self.blocks:
            raise EmptyCorpusError(
                f"corpus {corpus.name!r} ({corpus.root}) has no documents; add documents and rebuild"
            )
        self._full = self._full_prefix()
        if self._full is None and not bool((self._tokens <= self.budget).any()):
            raise RoutingError(
                f"corpus {corpus.name!r}: no category block fits the {self.budget}-token budget of this backend "
                f"(smallest block {int(self._tokens.min()) if len(self._tokens) else 0} tokens); rebuild with a "
                "smaller build.max_block_tokens or use a backend with a larger context window"
            )
        self._index = index
        self._chunk_block = np.array([self._position.get(c.block_id, -1) for c in corpus.chunks], dtype=np.int64)

    # --- public API -------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``full`` when every question gets the whole corpus, else ``category``."""
        return "full" if self._full is not None else "category"

    @property
    def index(self) -> ChunkIndex:
        """The chunk index, opened on first use (full mode never needs it)."""
        if self._index is None:
            from ragcache.router.embeddings import load_embedder
            from ragcache.router.index import open_index

            self._index = open_index(self.corpus, load_embedder(self.config.embedding_model))
        return self._index

    def route(self, question: str, previous: Route | None = None) -> Route:
        """The route for ``question``; ``previous`` is the session's last route (for stickiness)."""
        if self._full is not None:
            sticky = previous is not None and previous.block_ids == self._full
            reason = f"whole corpus ({self.corpus.total_tokens} tokens) fits the {self.budget}-token budget"
            return Route("full", self._full, sticky=sticky, reason=reason)
        scores = self.index.scores(question, self.config.dense_weight)
        block_scores = self.block_scores(scores.fused)
        ranked = self._ranked(block_scores)
        if not ranked:
            raise RoutingError(f"corpus {self.corpus.name!r} has no category blocks to route to")
        best = ranked[0]
        margin = float(block_scores[best] - block_scores[ranked[1]]) if len(ranked) > 1 else float(block_scores[best])
        chosen, reason = self._choose(ranked, block_scores, margin)
        sticky = False
        if previous is not None and self._can_keep(previous):
            kept = max(block_scores[self._position[b]] for b in previous.block_ids)
            lead = float(block_scores[best] - kept)
            if previous.block_ids != chosen and lead < self.config.sticky_margin:
                chosen, sticky = previous.block_ids, True
                reason = f"kept the session's blocks: best other block leads by {lead:.3f} < sticky_margin"
        shown = {self.blocks[i]: float(block_scores[i]) for i in ranked[:_SHOWN_SCORES]}
        shown.update({b: float(block_scores[self._position[b]]) for b in chosen})
        mode = "stack" if len(chosen) > 1 else "category"
        if int(sum(self._tokens[self._position[b]] for b in chosen)) < self.min_cacheable:
            reason += f"; below the backend's {self.min_cacheable}-token minimum cacheable prefix"
        return Route(mode, chosen, shown, margin, sticky, self._snippets(scores, chosen), reason)  # type: ignore[arg-type]

    def prefixes(self, *, stacks: bool = True) -> list[tuple[str, ...]]:
        """Every prefix :meth:`route` can emit: the full corpus, or blocks then canonical pairs that fit."""
        if self._full is not None:
            return [self._full]
        fitting = [i for i in range(len(self.blocks)) if self._tokens[i] <= self.budget]
        out = [(self.blocks[i],) for i in fitting]
        if stacks:
            out += [
                (self.blocks[a], self.blocks[b])
                for a, b in combinations(fitting, 2)
                if self._tokens[a] + self._tokens[b] <= self.budget
            ]
        return out

    def block_scores(self, fused: np.ndarray) -> np.ndarray:
        """Each category block's score: weighted sum of its best chunk scores (AGGREGATE_WEIGHTS)."""
        out = np.zeros(len(self.blocks), dtype=np.float64)
        order = np.lexsort((np.arange(len(fused)), -fused))
        taken = np.zeros(len(self.blocks), dtype=np.int64)
        depth = len(AGGREGATE_WEIGHTS)
        for i in order:
            block = self._chunk_block[i]
            if block < 0 or taken[block] >= depth:
                continue
            out[block] += AGGREGATE_WEIGHTS[taken[block]] * float(fused[i])
            taken[block] += 1
        return np.round(out, 6)

    # --- helpers ----------------------------------------------------------------

    def _full_prefix(self) -> tuple[str, ...] | None:
        if self.config.mode == "category":
            return None
        fits = self.corpus.total_tokens <= self.budget
        if not fits:
            if self.config.mode == "full":
                raise RoutingError(
                    f"router.mode is 'full' but corpus {self.corpus.name!r} has {self.corpus.total_tokens} tokens, "
                    f"more than the {self.budget}-token budget; use mode 'auto' or 'category'"
                )
            return None
        return ("full",) if self.corpus.full_block_id else tuple(self.blocks)

    def _ranked(self, block_scores: np.ndarray) -> list[int]:
        """Blocks that fit, best first; ties go to the earlier block (corpus order)."""
        order = np.lexsort((np.arange(len(block_scores)), -block_scores))
        return [int(i) for i in order if self._tokens[i] <= self.budget]

    def _choose(self, ranked: list[int], block_scores: np.ndarray, margin: float) -> tuple[tuple[str, ...], str]:
        best = ranked[0]
        if len(ranked) > 1 and margin <= self.config.stack_margin:
            second = ranked[1]
            if self._tokens[best] + self._tokens[second] <= self.budget:
                pair = tuple(self.blocks[i] for i in sorted((best, second)))
                return pair, f"top two blocks within stack_margin ({margin:.3f}) and both fit: canonical stack"
            return (self.blocks[best],), f"runner-up close ({margin:.3f}) but the pair exceeds {self.budget} tokens"
        return (self.blocks[best],), f"best block by {margin:.3f}"

    def _can_keep(self, previous: Route) -> bool:
        ids = previous.block_ids
        if previous.mode == "full" or not ids or any(b not in self._position for b in ids):
            return False
        return int(sum(self._tokens[self._position[b]] for b in ids)) <= self.budget

    def _snippets(self, scores: QueryScores, chosen: tuple[str, ...]) -> tuple[Snippet, ...]:
        """Best chunks outside ``chosen`` within the snippet budget, then put back in corpus order."""
        inside = {self._position[b] for b in chosen}
        fused = scores.fused
        budget, picked = self.config.snippet_tokens, []
        floor = SNIPPET_MIN_SHARE * float(fused.max()) if len(fused) else 0.0
        for i in np.lexsort((np.arange(len(fused)), -fused)):
            if len(picked) >= self.config.top_k or budget <= 0 or fused[i] <= max(floor, 0.0):
                break
            chunk = self.corpus.chunks[i]
            if self._chunk_block[i] in inside or chunk.tokens > budget:
                continue
            picked.append(int(i))
            budget -= chunk.tokens
        return tuple(
            Snippet(c.id, c.doc_id, c.text, float(fused[i]), c.tokens)
            for i in sorted(picked)
            for c in (self.corpus.chunks[i],)
        )

