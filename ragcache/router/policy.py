"""Router v2: fill the window with a stable run of topic blocks, priced against top-k.

The corpus is compiled into topic blocks in one canonical order (category, then
the topic tree's depth-first order; see ``corpus/topics.py``). With the budget
B = window − reserved output − ``history_allowance`` − instructions/tools/examples
(window = ``router.window_tokens`` or the backend's context window):

1. **full** — the corpus fits B: every question gets the whole corpus (one prefix).
2. Otherwise the canonical block sequence is cut once into consecutive segments
   of at most cap = B − :func:`tail_reserve` tokens (greedy, preferring a cut at a
   category boundary when the segment is already ≥ 80% full). Each segment is a
   **run**; a segment under 80% of the cap (the last one, when the corpus is a
   little larger than the window) is topped up to the cap with the corpus's
   leading blocks, in canonical order, so it nests on the first run's prefix (one
   shared cache entry) instead of sending a half-empty window. The runs are the
   enumerable prefix set (:meth:`HybridRouter.prefixes`): few at large windows, and
   each fills most of the budget, so a route uses the window instead of one block.
3. Per question, fused dense+BM25 chunk scores give the top ``RELEVANCE_POOL``
   chunks a relevance weight ((score / best) ** ``RELEVANCE_POWER``, so weak matches
   that any large run holds by chance count for little); a run's *coverage* is the share
   of that weight inside it. The best run wins; a session keeps its previous run
   unless the winner's score (its best three fused chunk scores, weighted) leads
   by ``sticky_margin`` (switching also throws away the cached history).
4. **Price-aware.** Each question adds to its best run's *demand* (counts decayed
   on a logical clock, half-life ``DEMAND_HALF_LIFE`` questions). Runs among the
   top ``cache.warm_max_prefixes`` by demand are *hot* (all are when there are no
   more runs than that). A hot best run is used (mode **blocks**). Otherwise the
   router compares, by coverage, (a) the best hot run plus its tail against
   (b) a tail-only **topk** route whose tokens cost what (a) costs when its prefix
   is read from cache (``CACHED_READ_PRICE`` × prefix + tail), and takes the
   better: a router that prices its options is never worse than top-k at equal cost.
5. **The tail** (blocks routes) is priced against top-k: it holds the chunks that a
   top-k prompt *of the same cost* would hold and the run does not. Walking the
   question's chunks best first, a chunk inside the run uses up the run's cost
   allowance (``CACHED_READ_PRICE`` × run tokens, plus its share of the cache write,
   ``WRITE_PRICE`` × run tokens / ``WRITE_AMORTIZED_OVER``; a constant, so a session's
   earlier turns re-render byte-identically); a chunk outside it joins the tail
   (it costs the same in both prompts). The walk ends when the allowance is spent, the
   window is full or ``top_k`` tail chunks are taken. So a run that holds the best
   chunks gets a short tail, and the prompt holds every chunk top-k at equal cost
   would send (while the window has room): the router's evidence is a superset.

:meth:`HybridRouter.hot_prefixes` gives the demand-ranked runs for the warmer; the
demand state (:class:`Demand`) can be shared or saved by a server. Everything is
deterministic: ties go to the earlier chunk or run, and routes depend only on the
corpus, the settings and the sequence of questions seen.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ragcache.errors import EmptyCorpusError, RoutingError
from ragcache.prompt import NON_CORPUS_BLOCKS, Route, RouteTokens, Snippet
from ragcache.router.runs import DEMAND_HALF_LIFE, BlockRun, Demand, plan_runs

if TYPE_CHECKING:
    from ragcache.backends.base import Capabilities
    from ragcache.config import RouterConfig
    from ragcache.corpus.manifest import CompiledCorpus
    from ragcache.router.index import ChunkIndex

__all__ = [
    "CACHED_READ_PRICE",
    "DEFAULT_HOT_PREFIXES",
    "DEMAND_HALF_LIFE",
    "PRICE_MARGIN",
    "RELEVANCE_POOL",
    "RELEVANCE_POWER",
    "WRITE_AMORTIZED_OVER",
    "WRITE_PRICE",
    "BlockRun",
    "Demand",
    "HybridRouter",
    "context_budget",
    "plan_runs",
    "tail_reserve",
]

CACHED_READ_PRICE = 0.1  # a cached input token costs about a tenth of an uncached one at every vendor
RELEVANCE_POOL = 32  # top chunks whose fused scores are the relevance a route can cover
RELEVANCE_POWER = 4.0  # weight = (score / best score) ** power
PRICE_MARGIN = 0.01  # a cold question's hot run must cover this much more relevance than top-k at equal cost
WRITE_PRICE = 1.25  # a cache write (5-minute TTL) costs 1.25x an uncached token
WRITE_AMORTIZED_OVER = 1  # a run's write charged in full per request: worst case, constant per session
DEFAULT_HOT_PREFIXES = 32  # cache.warm_max_prefixes when the caller names none
STICKY_WEIGHTS = (0.6, 0.25, 0.15)  # a run's score for stickiness: its best three chunks, the first dominant


def context_budget(
    corpus: CompiledCorpus, config: RouterConfig, capabilities: Capabilities, reserved_output: int
) -> int:
    """Tokens for corpus blocks plus tail: window − output − history − instructions/tools/examples."""
    window = config.window_tokens or capabilities.context_window
    overhead = sum(corpus.blocks[b].tokens for b in NON_CORPUS_BLOCKS if b in corpus.blocks)
    return window - reserved_output - config.history_allowance - overhead


def tail_reserve(budget: int, snippet_tokens: int) -> int:
    """Tokens a run leaves for the tail: ``snippet_tokens`` plus what the run's cached read buys.

    Top-k at the route's cost gets about ``CACHED_READ_PRICE`` × run + tail tokens; the
    tail must have room for that top-k's chunks outside the run, so the reserve r solves
    r = snippet_tokens + CACHED_READ_PRICE × (budget − r).
    """
    return min(budget, int((snippet_tokens + CACHED_READ_PRICE * budget) / (1 + CACHED_READ_PRICE)))


class HybridRouter:
    """Routes questions to the whole corpus, a hot run of blocks plus tail, or a top-k tail (module docstring)."""

    def __init__(
        self,
        corpus: CompiledCorpus,
        config: RouterConfig,
        capabilities: Capabilities,
        reserved_output: int,
        *,
        index: ChunkIndex | None = None,
        hot_limit: int | None = None,
        demand: Demand | None = None,
    ) -> None:
        self.corpus = corpus
        self.config = config
        self.budget = context_budget(corpus, config, capabilities, reserved_output)
        self.min_cacheable = capabilities.min_cacheable_tokens
        self.hot_limit = DEFAULT_HOT_PREFIXES if hot_limit is None else hot_limit
        self.blocks = corpus.category_block_ids()
        if not self.blocks:
            raise EmptyCorpusError(
                f"corpus {corpus.name!r} ({corpus.root}) has no documents; add documents and rebuild"
            )
        if self.budget <= 0:
            raise RoutingError(
                f"corpus {corpus.name!r}: the context window leaves {self.budget} tokens for the corpus after output, "
                "history and instructions; use a backend (or router.window_tokens) with a larger window"
            )
        self._full = self._full_prefix()
        tokens = [corpus.block(b).tokens for b in self.blocks]
        cap = self.budget - tail_reserve(self.budget, config.snippet_tokens)
        runs = [] if self._full is not None or config.mode == "topk" else self._runs(tokens, cap)
        self.runs: list[BlockRun] = runs
        self._run_by_blocks = {run.block_ids: run.index for run in runs}
        self.demand = demand if demand is not None else Demand(len(runs))
        if len(self.demand.counts) != len(runs):
            raise RoutingError(f"demand state has {len(self.demand.counts)} runs, this router has {len(runs)}")
        self._index = index
        position = {bid: i for i, bid in enumerate(self.blocks)}
        member = np.zeros((len(runs), len(self.blocks) + 1), dtype=bool)  # last column: chunks in no block
        for run in runs:
            member[run.index, list(run.positions)] = True
        chunk_block = np.array([position.get(c.block_id, -1) for c in corpus.chunks], dtype=np.int64)
        self._in_run = member[:, chunk_block]  # (runs, chunks): the run's prefix holds the chunk
        self._chunk_tokens = np.array([c.tokens for c in corpus.chunks], dtype=np.int64)

    # --- public API -------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``full`` when every question gets the whole corpus, else ``blocks`` (runs, with top-k as fallback)."""
        return "full" if self._full is not None else "blocks"

    @property
    def index(self) -> ChunkIndex:
        """The chunk index, opened on first use (full mode never needs it)."""
        if self._index is None:
            from ragcache.router.embeddings import load_embedder
            from ragcache.router.index import open_index

            self._index = open_index(self.corpus, load_embedder(self.config.embedding_model))
        return self._index

    def route(self, question: str, previous: Route | None = None, *, observe: bool = True) -> Route:
        """The route for ``question``; ``previous`` is the session's last route; ``observe`` counts demand."""
        if self._full is not None:
            sticky = previous is not None and previous.block_ids == self._full
            reason = f"whole corpus ({self.corpus.total_tokens} tokens) fits the {self.budget}-token budget"
            return self._make_route("full", self._full, (), reason, sticky=sticky)
        fused = self.index.scores(question, self.config.dense_weight).fused
        order = np.lexsort((np.arange(len(fused)), -fused))
        relevance = self.relevance(fused, order)
        if not self.runs:
            return self._topk(fused, order, self.config.snippet_tokens, "no run of blocks fits the budget")
        coverage = self.coverage(relevance)
        best = int(np.lexsort((np.arange(len(coverage)), -coverage))[0])
        if observe:
            self.demand.observe(best)
        scores = {f"run:{i}": float(coverage[i]) for i in np.argsort(-coverage, kind="stable")[:5]}
        kept = self._run_by_blocks.get(previous.block_ids) if previous is not None and previous.block_ids else None
        if kept is not None and kept != best:
            top = self.run_scores(fused, order)
            lead = float(top[best] - top[kept])
            if lead < self.config.sticky_margin:
                reason = f"kept the session's run {kept}: run {best} leads by {lead:.3f} < sticky_margin"
                return self._blocks_route(kept, fused, order, reason, scores, sticky=True)
        hot = self.demand.hot(self.hot_limit)
        if best in hot:
            return self._blocks_route(best, fused, order, f"run {best} covers {coverage[best]:.3f}", scores)
        return self._priced(best, hot, coverage, fused, order, relevance, scores)

    def prefixes(self) -> list[tuple[str, ...]]:
        """Every corpus-block tuple :meth:`route` can emit: the full corpus, or each run (plus () for top-k)."""
        if self._full is not None:
            return [self._full]
        return [run.block_ids for run in self.runs]

    def hot_prefixes(self, n: int) -> list[tuple[str, ...]]:
        """The ``n`` runs most in demand (ties to canonical order): what a warmer should keep warm."""
        if self._full is not None:
            return [self._full][:n]
        return [self.runs[i].block_ids for i in self.demand.ranked()[:n]]

    def relevance(self, fused: np.ndarray, order: np.ndarray) -> dict[int, float]:
        """Chunk → relevance weight for the top ``RELEVANCE_POOL`` chunks: (score / best) ** RELEVANCE_POWER.

        The power keeps the weight on chunks that score near the best one; weak
        matches, which any large run holds by chance, count for almost nothing.
        """
        pool = order[:RELEVANCE_POOL]
        best = float(fused[pool[0]]) if len(pool) else 0.0
        if best <= 0:
            return {}
        return {int(i): round((float(fused[i]) / best) ** RELEVANCE_POWER, 6) for i in pool if fused[i] > 0}

    def run_scores(self, fused: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Each run's weighted best chunk scores (``STICKY_WEIGHTS``, best first): what stickiness compares."""
        out = np.zeros(len(self.runs), dtype=np.float64)
        taken = np.zeros(len(self.runs), dtype=np.int64)
        weights = np.array(STICKY_WEIGHTS)
        for i in order:
            add = self._in_run[:, i] & (taken < len(STICKY_WEIGHTS))
            if add.any():
                out[add] += weights[taken[add]] * float(fused[i])
                taken[add] += 1
                if taken.min() >= len(STICKY_WEIGHTS):
                    break
        return np.round(out, 6)

    def coverage(self, relevance: dict[int, float]) -> np.ndarray:
        """Each run's share of the question's relevance weight."""
        chunks = np.array(list(relevance), dtype=np.int64)
        weights = np.array(list(relevance.values()), dtype=np.float64)
        summed = self._in_run[:, chunks].astype(np.float64) @ weights
        return np.round(summed / (float(weights.sum()) or 1.0), 6)

    # --- helpers ----------------------------------------------------------------

    def _runs(self, tokens: list[int], cap: int) -> list[BlockRun]:
        categories = [self.corpus.block(b).category for b in self.blocks]
        return plan_runs(self.blocks, tokens, categories, cap)

    def _full_prefix(self) -> tuple[str, ...] | None:
        if self.config.mode in ("blocks", "topk"):
            return None
        fits = self.corpus.total_tokens <= self.budget
        if not fits:
            if self.config.mode == "full":
                raise RoutingError(
                    f"router.mode is 'full' but corpus {self.corpus.name!r} has {self.corpus.total_tokens} tokens, "
                    f"more than the {self.budget}-token budget; use mode 'auto' or 'blocks'"
                )
            return None
        return ("full",) if self.corpus.full_block_id else tuple(self.blocks)

    def _priced(
        self,
        best: int,
        hot: set[int],
        coverage: np.ndarray,
        fused: np.ndarray,
        order: np.ndarray,
        relevance: dict[int, float],
        scores: dict[str, float],
    ) -> Route:
        """The best run is cold: the best hot run + tail, or top-k at the same cost, whichever covers more."""
        if self.config.mode == "topk" or not hot:
            tokens = int(CACHED_READ_PRICE * self.runs[best].tokens) + self.config.snippet_tokens
            return self._topk(fused, order, tokens, f"run {best} is not hot; top-k at its cached cost")
        hot_best = min(hot, key=lambda i: (-coverage[i], i))
        tail = self._tail(order, self.runs[hot_best])
        total = sum(relevance.values()) or 1.0
        tail_weight = sum(relevance.get(i, 0.0) for i in tail) / total
        tail_tokens = int(self._chunk_tokens[tail].sum()) if tail else 0
        cost = int(CACHED_READ_PRICE * self.runs[hot_best].tokens) + tail_tokens
        picked = self._top_chunks(order, cost)
        topk_cover = round(sum(relevance.get(i, 0.0) for i in picked) / total, 6)
        blocks_cover = round(float(coverage[hot_best]) + tail_weight, 6)
        if blocks_cover > topk_cover + PRICE_MARGIN:  # a run that only adds noise loses to top-k
            reason = (
                f"best run {best} is cold; hot run {hot_best} + tail covers "
                f"{blocks_cover:.3f} > top-k at equal cost {topk_cover:.3f}"
            )
            return self._blocks_route(hot_best, fused, order, reason, scores)
        reason = f"best run {best} is cold; top-k at the cost of hot run {hot_best} covers {topk_cover:.3f}"
        return self._make_route("topk", (), self._snippets(fused, picked), reason, scores=scores)

    def _blocks_route(
        self,
        run: int,
        fused: np.ndarray,
        order: np.ndarray,
        reason: str,
        scores: dict[str, float],
        sticky: bool = False,
    ) -> Route:
        chosen = self.runs[run]
        tail = self._tail(order, chosen)
        if chosen.tokens < self.min_cacheable:
            reason += f"; below the backend's {self.min_cacheable}-token minimum cacheable prefix"
        return self._make_route("blocks", chosen.block_ids, self._snippets(fused, tail), reason, scores, sticky)

    def _topk(self, fused: np.ndarray, order: np.ndarray, tokens: int, reason: str) -> Route:
        return self._make_route("topk", (), self._snippets(fused, self._top_chunks(order, tokens)), reason)

    def _top_chunks(self, order: np.ndarray, tokens: int) -> list[int]:
        """The best chunks that fit ``tokens`` (a chunk too big for what is left is skipped)."""
        picked, left = [], min(tokens, self.budget)
        smallest = int(self._chunk_tokens.min()) if len(self._chunk_tokens) else 1
        for i in order:
            if left < smallest:
                break
            if self._chunk_tokens[i] <= left:
                picked.append(int(i))
                left -= int(self._chunk_tokens[i])
        return picked

    def _tail(self, order: np.ndarray, run: BlockRun) -> list[int]:
        """Chunks outside ``run`` that top-k at the route's cost would send (module docstring, 5)."""
        allowance = (CACHED_READ_PRICE + WRITE_PRICE / WRITE_AMORTIZED_OVER) * run.tokens
        picked: list[int] = []
        inside, left = 0, self.budget - run.tokens
        smallest = int(self._chunk_tokens.min()) if len(self._chunk_tokens) else 1
        for i in order:
            tokens = int(self._chunk_tokens[i])
            if self._in_run[run.index, i]:
                inside += tokens
                if inside > allowance:
                    break
            elif tokens <= left:
                picked.append(int(i))
                left -= tokens
                if left < smallest or len(picked) >= self.config.top_k:
                    break
        return picked

    def _snippets(self, fused: np.ndarray, picked: list[int]) -> tuple[Snippet, ...]:
        """Chunks as tail snippets, in corpus order (so the same set renders the same bytes)."""
        return tuple(
            Snippet(c.id, c.doc_id, c.text, float(fused[i]), c.tokens)
            for i in sorted(picked)
            for c in (self.corpus.chunks[i],)
        )

    @cached_property
    def _all_documents(self) -> tuple[str, ...]:
        return tuple(self.corpus.documents_of(self.blocks))

    def _make_route(
        self,
        mode: str,
        block_ids: tuple[str, ...],
        snippets: tuple[Snippet, ...],
        reason: str,
        scores: dict[str, float] | None = None,
        sticky: bool = False,
    ) -> Route:
        stable = self.corpus.documents_of(block_ids) if mode != "full" else list(self._all_documents)
        documents = tuple(dict.fromkeys([*stable, *(s.doc_id for s in snippets)]))
        stable_tokens = sum(self.corpus.block(b).tokens for b in block_ids)
        tokens = RouteTokens(stable=stable_tokens, tail=sum(s.tokens for s in snippets))
        margin = None
        if scores and len(scores) > 1:
            top = sorted(scores.values(), reverse=True)
            margin = top[0] - top[1]
        return Route(mode, block_ids, scores or {}, margin, sticky, snippets, reason, documents, tokens)  # type: ignore[arg-type]
