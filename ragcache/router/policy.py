"""Router v4: fill the window with a stable run of topic blocks, priced by the cache state the
deployment observes, and never hold less than top-k at equal cost.

The corpus is compiled into topic blocks in one canonical order (category, then
the topic tree's depth-first order; see ``corpus/topics.py``). With the budget
B = window − reserved output − ``history_allowance`` − instructions/tools/examples
(window = ``router.window_tokens`` or the backend's context window):

1. **full** — the corpus fits B: every question gets the whole corpus (one prefix).
2. Otherwise the canonical block sequence is cut once into consecutive segments
   of at most cap = B − :func:`tail_reserve` tokens (the tail keeps at least
   ``TAIL_SHARE`` of B; greedy, preferring a cut at a category boundary when the
   segment is already ≥ 80% full). Each segment is a **run**; a segment under 80%
   of the cap is topped up with the corpus's leading blocks, so it nests on the
   first run's prefix (``runs.py``). The runs are the enumerable prefix set
   (:meth:`HybridRouter.prefixes`): few at large windows, each filling most of the cap.
3. **What a run costs** (per stable token, relative to an uncached one; the backend
   profile's read R and write W multipliers, ``ragcache.backends.profile``). Callers
   pass their clock as ``route(..., now=)`` (the server ``time.monotonic()``, the eval
   its replay's arrival times), and the router keeps, per prefix, when it was last sent
   by a route or warmed (:meth:`HybridRouter.mark_warm`: the server's warm-up, keep-warm
   and answered requests). With a TTL a prefix is **warm** while now − last sent < TTL
   (a read refreshes it, as vendors do) and its run is priced at exactly R. A **cold**
   run writes what no warm prefix shares with it (a nested run reads the shared head,
   within the vendor's lookback and minimum, as ``ragcache.cache.replay`` charges), and
   that write is spread over the questions expected to reuse the run while cached:
   price = R + (W − R) × cold share / (1 + reuses), reuses = the run's demand share ×
   the observed question rate (the last ``RATE_WINDOW`` arrivals) × TTL. (R + (W − R)/(1+n)
   is the mean over the write and n reads; with no reuse it is W, what the request pays.)
   ``router.questions_per_ttl`` is only the rate's prior before two arrivals; the share's
   prior is uniform and worth ``PRIOR_QUESTIONS``. A self-hosted engine (no TTL) keeps
   the most recently sent prefixes that fit ``router.kv_capacity_tokens`` (LRU): those are
   warm, a cold one is a prefill (W), and its "TTL" is how long the capacity lasts at
   the observed prefill rate (at most ``NO_TTL_HORIZON_S``). Each route records
   ``pricing``: the price it chose by and the charge its request pays on the state
   observed, which is what the replay charges (tests/unit/test_router_observed.py).
   Without ``now`` a run is priced by the demand prior as in v3:
   R + W × exp(−share × ``questions_per_ttl``).
4. **The tail makes the route a superset of top-k at equal cost.** Walking the
   question's fused dense+BM25 chunk ranking best first, a chunk outside the run
   joins the tail (it costs the same in both prompts) and a chunk inside it uses up
   the run's price (price × run tokens). When the price is used up, the prompt holds
   every chunk that a top-k prompt of the same cost would hold: such a run is
   **admissible**. A run whose walk does not end inside the window (its price buys
   more top-k than the window leaves room for) is not. Top-k "at equal cost" is given
   the router's *mean* cost per question, and the router's spend is uneven (a write
   pays for the reads after it; top-k routes fill the window), so with a clock the walk
   also goes at least as deep as top-k of the mean its observed routes cost so far
   (:class:`~ragcache.router.spend.Spend`: a write counted at the price assumed for it,
   its reads paying the rest off, a run that expires still owing counted in full). A
   warm read then holds what top-k at the router's own mean would, not only what its
   read price buys; where the mean is out of a run's reach, the route is top-k.
5. **Choice.** Among the admissible runs (the ``CANDIDATES`` best by coverage, the
   share of the question's relevance weight inside them), the best covered wins. While
   the stable prefixes sent so far cost more than the same tokens as plain input (a
   write at a premium, e.g. Anthropic's 1.25x, not yet repaid by reads), no run that
   would be written at a premium is admissible: the router stops betting on runs its
   own traffic has not repaid, and overspends plain input by at most one write's premium.
   A write at no premium (OpenAI's 1.0x; a nested run mostly read) is never held back
   that way, so its walk must reach top-k at the mean the traffic *really* paid, the
   debts of the writes still being repaid included: the debts it adds cannot pile up
   below what the walks of its reads are held to.
   A conversation pins its first turn's route (``ragcache/conversation.py`` decides
   stickiness, once; :meth:`HybridRouter.preferred_run` and :meth:`HybridRouter.tail`
   serve it). With no admissible run the route is **topk**: the best chunks up to ``router.fill`` of B. Any route
   whose tokens are below ``fill`` × B takes more of the best chunks outside its run
   until it reaches it, so a route uses the window.

So the router's evidence is never less than top-k's at the same price (its own, and the mean
its traffic has cost so far, up to the debt of writes still being repaid), it spends a
stable prefix only where the price says it pays (warm runs, or cold ones its own
traffic will reuse), and where the traffic it sees has no structure a run can capture
(questions spread over many runs, too rare to reuse one within its TTL) cold runs
price near W, their walks do not complete, and the route is top-k.
:meth:`HybridRouter.hot_prefixes` gives the demand-ranked runs for the warmer; the
demand state (:class:`Demand`) can be shared or saved by a server.
Everything is deterministic: ties go to the earlier chunk or run, and routes depend
only on the corpus, the settings and the sequence of questions (and clock values) seen.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from cachetools import LRUCache

from ragcache.errors import EmptyCorpusError, RoutingError
from ragcache.prompt import NON_CORPUS_BLOCKS, Route, RouteTokens, Snippet, estimate_margin
from ragcache.router.runs import DEMAND_HALF_LIFE, BlockRun, Demand, plan_runs
from ragcache.router.spend import Spend

if TYPE_CHECKING:
    from ragcache.backends.base import Capabilities
    from ragcache.backends.profile import CacheProfile
    from ragcache.config import RouterConfig
    from ragcache.corpus.manifest import CompiledCorpus
    from ragcache.router.index import ChunkIndex

__all__ = [
    "CANDIDATES",
    "DEMAND_HALF_LIFE",
    "NO_TTL_HORIZON_S",
    "PRIOR_QUESTIONS",
    "RATE_WINDOW",
    "RELEVANCE_POOL",
    "RELEVANCE_POWER",
    "TAIL_SHARE",
    "BlockRun",
    "Demand",
    "HybridRouter",
    "context_budget",
    "plan_runs",
    "tail_reserve",
]

RELEVANCE_POOL = 32  # top chunks whose fused scores are the relevance a route can cover
RELEVANCE_POWER = 4.0  # weight = (score / best score) ** power
TAIL_SHARE = 0.3  # runs leave at least this share of the budget to the tail (room for the walk)
CANDIDATES = 8  # runs, best covered first, whose walk is tried per question
STICKY_WEIGHTS = (0.6, 0.25, 0.15)  # a run's score for stickiness: its best three chunks, the first dominant
FUSED_MEMO = 256  # question texts whose chunk scores are remembered
RATE_WINDOW = 32  # recent arrivals (and self-hosted writes) the observed rates are measured over
PRIOR_QUESTIONS = 1.0  # weight of the uniform share prior in observed pricing (one question's worth)
NO_TTL_HORIZON_S = 86_400.0  # the longest a self-hosted prefix is assumed to stay resident (a day)


def context_budget(
    corpus: CompiledCorpus, config: RouterConfig, capabilities: Capabilities, reserved_output: int
) -> int:
    """Tokens for corpus blocks plus tail: window − output − history − instructions/tools/examples."""
    window = config.window_tokens or capabilities.context_window
    overhead = sum(corpus.blocks[b].tokens for b in NON_CORPUS_BLOCKS if b in corpus.blocks)
    return window - reserved_output - config.history_allowance - overhead


def tail_reserve(budget: int, snippet_tokens: int, read_price: float) -> int:
    """Tokens a run leaves for the tail: room for the walk of module docstring, 4.

    At least ``TAIL_SHARE`` of the budget, and at least what solves r = snippet_tokens +
    read_price × (budget − r) (top-k at a warm run's read price, plus snippets).
    """
    priced = int((snippet_tokens + read_price * budget) / (1 + read_price))
    return min(budget, max(priced, int(TAIL_SHARE * budget)))


@dataclass(frozen=True)
class _Walk:
    """Where a run's walk ended (the last rank it needs) and whether it ended inside the window."""

    depth: int
    complete: bool


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
        demand: Demand | None = None,
        profile: CacheProfile | None = None,
    ) -> None:
        from ragcache.backends.profile import default_profile

        # The cache economics every price below uses (None: claude-sonnet-4-5 at 5 minutes).
        self.profile = profile if profile is not None else default_profile()
        self.read_price = self.profile.read_multiplier
        self.write_price = self.profile.write_multiplier
        self.corpus = corpus
        self.config = config
        self.window = config.window_tokens or capabilities.context_window
        self.budget = context_budget(corpus, config, capabilities, reserved_output)
        self.min_cacheable = capabilities.min_cacheable_tokens
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
        cap = self.budget - tail_reserve(self.budget, config.snippet_tokens, self.read_price)
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
        self._position, self._chunk_block = position, chunk_block
        self._fused_memo: LRUCache[tuple[str, float], np.ndarray] = LRUCache(FUSED_MEMO)
        self._memo_lock = threading.Lock()
        self._in_run = member[:, chunk_block]  # (runs, chunks): the run's prefix holds the chunk
        self._chunk_tokens = np.array([c.tokens for c in corpus.chunks], dtype=np.int64)
        # Observed cache state, on the callers' clock (module docstring, 3).
        self._state_lock = threading.RLock()
        self._sent: dict[tuple[str, ...], float] = {}  # TTL: prefix -> when it was last sent or warmed
        self._resident: OrderedDict[tuple[str, ...], int] = OrderedDict()  # self-hosted: LRU prefix -> tokens
        self._arrivals: deque[float] = deque(maxlen=RATE_WINDOW)
        self._writes: deque[tuple[float, int]] = deque(maxlen=RATE_WINDOW)  # self-hosted: (when, tokens written)
        self.spend = Spend()  # what the routes observed on a clock were charged (module docstring, 4-5)

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

    def route(self, question: str, *, observe: bool = True, now: float | None = None) -> Route:
        """The route for one question (``observe``: count it as demand, and with ``now`` as a send of its
        prefix); conversations pin it (module docstring, 5). ``now``: the caller's clock in seconds
        (server: ``time.monotonic()``; eval: the replay's arrival time), which prices runs by the cache
        state observed (module docstring, 3); None prices by the demand prior (router v3)."""
        route = self._route(question, observe, now)
        if now is None:
            return route
        with self._state_lock:
            charge, warm = self._charge(route.block_ids, route.tokens.stable, now)
            if observe:
                self._arrivals.append(now)
                price = route.pricing.get("price", charge)
                self.spend.record(route.block_ids, charge, price, route.tokens.stable, route.tokens.tail)
                if route.block_ids and route.tokens.stable >= self.min_cacheable:
                    self._send(route.block_ids, route.tokens.stable, now, charge, warm)
        pricing = {**route.pricing, "charge": round(charge, 6), "warm": float(warm)}
        return replace(route, pricing=pricing)

    def _route(self, question: str, observe: bool, now: float | None) -> Route:
        if self._full is not None:
            reason = f"whole corpus ({self.corpus.total_tokens} tokens) fits the {self.budget}-token budget"
            return self.make_route("full", self._full, (), reason)
        fused = self.fused_scores(((question, 1.0),))
        order = self.ranking(fused)
        fill = int(self.config.fill * self.budget)
        if not self.runs:
            reason = "no run of blocks fits the budget" if self.config.mode != "topk" else "router.mode is topk"
            tokens = self.config.snippet_tokens if self.config.mode == "topk" else fill
            return self.make_route(
                "topk", (), self._snippets(fused, self._top_chunks(order, min(tokens, self.budget))), reason
            )
        coverage = self.coverage(self.relevance(fused, order))
        ranked = np.lexsort((np.arange(len(coverage)), -coverage))
        best = int(ranked[0])
        price = self.run_prices(now)  # before this question counts: its own run is not warm yet
        if observe:
            self.demand.observe(best)
        scores = {f"run:{i}": float(coverage[i]) for i in ranked[:5]}
        floor, paid, paid_mean = 0.0, True, 0.0
        if now is not None:  # what the traffic so far cost (module docstring, 4-5)
            with self._state_lock:
                self.spend.settle(lambda key: self._is_warm(key, now))
                floor, paid, paid_mean = self.spend.mean_tokens, self.spend.runs_paid, self.spend.paid_mean_tokens
        candidates = [int(i) for i in ranked[:CANDIDATES]]
        walks = self._walks(order, candidates, price, floor=floor)
        floors = dict.fromkeys(candidates, floor)
        # what sending each complete run would be charged now (a deeper floor below only drops runs)
        charge = {r: self._send_charge(r, now) for r in candidates if walks[r].complete}
        # a write at no premium over plain input (charged above the price assumed, at most 1.0): never held back
        free = [r for r in charge if float(price[r]) < charge[r] <= 1.0]
        if free and paid_mean > floor:  # writes no premium holds back reach the mean really paid (docstring, 5)
            walks.update(self._walks(order, free, price, floor=paid_mean))
            floors.update(dict.fromkeys(free, paid_mean))
        complete = [r for r in walks if walks[r].complete]
        admissible = complete if paid else [r for r in complete if charge[r] <= 1.0]  # no write at a premium
        if not admissible:
            unpaid = "" if admissible == complete else "; the runs written so far have not paid for themselves yet"
            reason = (
                f"no run pays for itself (best: run {best}, price {price[best]:.2f}{unpaid}); top-k fills the window"
            )
            return self.make_route("topk", (), self._snippets(fused, self._top_chunks(order, fill)), reason, scores)
        chosen = min(admissible, key=lambda r: (-coverage[r], r))
        reason = f"run {chosen} covers {coverage[chosen]:.3f} at price {price[chosen]:.2f}"
        route = self._blocks_route(chosen, walks[chosen], order, fused, reason, scores)
        pricing = {"price": float(price[chosen])} | ({"floor": round(floors[chosen], 1)} if now is not None else {})
        return replace(route, pricing=pricing)

    def _send_charge(self, run: int, now: float | None) -> float:
        """What sending ``run`` at ``now`` would be charged, relative to plain input (above 1.0: a write the
        vendor charges at a premium, a bet that reads will repay it); without a clock, 0 (nothing observed)."""
        if now is None:
            return 0.0
        with self._state_lock:
            return self._charge(self.runs[run].block_ids, self.runs[run].tokens, now)[0]

    def fused_scores(self, queries: Sequence[tuple[str, float]]) -> np.ndarray:
        """Weighted sum of the fused dense+BM25 chunk scores of each ``(text, weight)`` (a conversation's
        retrieval query is its new question plus its recent ones, docs/architecture.md "Conversations")."""
        total = np.zeros(len(self.corpus.chunks), dtype=np.float64)
        for text, weight in queries:
            if weight > 0 and text.strip():
                total += weight * self._fused_of(text)
        return np.round(total, 6)

    @staticmethod
    def ranking(fused: np.ndarray) -> np.ndarray:
        """Chunk indexes best first (ties to the earlier chunk)."""
        return np.lexsort((np.arange(len(fused)), -fused))

    def tail(
        self, fused: np.ndarray, block_ids: Sequence[str], tokens: int, exclude: frozenset[str] = frozenset()
    ) -> tuple[Snippet, ...]:
        """The best chunks outside ``block_ids`` and ``exclude`` (chunk ids already sent) within ``tokens``,
        at most ``router.top_k`` of them: the tail of a route whose blocks are already decided."""
        eligible = ~self._chunks_in(tuple(block_ids))
        for chunk_id in exclude:
            eligible[self._chunk_position[chunk_id]] = False
        return self._snippets(fused, self._top_chunks(self.ranking(fused), tokens, eligible))

    def walk_tail(
        self,
        fused: np.ndarray,
        block_ids: Sequence[str],
        carried: frozenset[str],
        allowance: float,
        room: int,
        minimum: int = 0,
        premium: float = 0.0,
        depth: int = 0,
    ) -> tuple[tuple[Snippet, ...], bool]:
        """A later conversation turn's excerpts: the walk of module docstring, 4, over what its prompt
        already carries (``block_ids`` and ``carried``, the chunks sent with earlier turns).

        Walking the ranking best first, a carried chunk uses up ``allowance`` (the read price of what
        is carried: a top-k prompt of the same cost would have had to buy it) and any other chunk joins
        the excerpts. The walk is complete when the allowance is used up within ``room`` tokens: the
        prompt then holds every chunk such a top-k prompt would. The excerpts are then topped up with
        the next best chunks to ``minimum`` tokens. Returns the excerpts and whether it completed.
        ``premium``: what writing an excerpt to the cache costs above an uncached token (the same
        money buys a top-k prompt that much more), so each excerpt walked adds it to the allowance.
        ``depth``: the walk also goes on until the chunks it passed (carried or new) reach this many
        tokens, so the prompt holds at least the top ``depth`` tokens of the ranking.
        """
        inside = self._chunks_in(tuple(block_ids))
        cap = self.config.top_k or len(fused)
        picked: list[int] = []
        used, walked, left = 0, 0, allowance
        complete = allowance <= 0 and depth <= 0
        for i in self.ranking(fused):
            chunk = self.corpus.chunks[i]
            if inside[i] or chunk.id in carried:
                left -= chunk.tokens
                walked += chunk.tokens
            elif len(picked) >= cap or (complete and used + chunk.tokens > minimum):
                complete = True
                break
            elif used + chunk.tokens <= room:
                picked.append(int(i))
                used += chunk.tokens
                walked += chunk.tokens
                left += 0.0 if complete else premium * chunk.tokens
            elif not complete:
                return self._snippets(fused, picked), False
            complete = complete or (left <= 0 and walked >= depth)
            if complete and used >= minimum:
                break
        return self._snippets(fused, picked), True

    def preferred_run(self, fused: np.ndarray, pinned: Sequence[str]) -> tuple[str, ...] | None:
        """The run a conversation pinned to ``pinned`` should move to, or None to stay.

        It moves when the best-covered run leads the pinned run's score (:meth:`run_scores`) by
        ``sticky_margin``; both depend on the query alone (not on demand), so every worker
        derives the same answer. A conversation on the whole corpus or on top-k never moves.
        """
        kept = self._run_by_blocks.get(tuple(pinned))
        if kept is None:
            return None
        order = self.ranking(fused)
        coverage = self.coverage(self.relevance(fused, order))
        best = int(np.lexsort((np.arange(len(coverage)), -coverage))[0])
        if best == kept:
            return None
        top = self.run_scores(fused, order)
        return self.runs[best].block_ids if float(top[best] - top[kept]) >= self.config.sticky_margin else None

    def reanchor_run(
        self, fused: np.ndarray, pinned: Sequence[str], budget: int, now: float | None = None
    ) -> tuple[str, ...]:
        """The blocks a conversation re-anchors on when a later turn's walk failed (``()``: top-k).

        The same admissibility as :meth:`route` (module docstring, 4), with the tail walked within
        ``budget`` (what the window leaves for blocks and excerpts after the history): the pinned
        run is priced as a read (the conversation has just read it), another run by the cache state
        observed at ``now`` (:meth:`run_prices`), or with no clock at the demand-free prior, so the
        answer depends on the words alone. The pinned run stays while it is admissible; else the
        best covered admissible run; else none, and the turn is top-k.
        """
        if not self.runs:
            return tuple(pinned)
        order = self.ranking(fused)
        coverage = self.coverage(self.relevance(fused, order))
        candidates = [int(i) for i in np.lexsort((np.arange(len(coverage)), -coverage))[:CANDIDATES]]
        price = self.run_prices(now) if now is not None else self._prices(np.zeros(len(self.runs)))
        kept = self._run_by_blocks.get(tuple(pinned))
        if kept is not None:
            price[kept] = self.read_price if self.runs[kept].tokens >= self.min_cacheable else 1.0
            candidates.append(kept)
        walks = self._walks(order, candidates, price, budget)
        admissible = [r for r, walk in walks.items() if walk.complete]
        if kept in admissible:
            return tuple(pinned)
        if not admissible:
            return ()
        return self.runs[min(admissible, key=lambda r: (-coverage[r], r))].block_ids

    def run_prices(self, now: float | None = None) -> np.ndarray:
        """Each run's price per stable token and request, relative to an uncached token (module docstring, 3):
        on the cache state observed at ``now``, or by the demand prior when ``now`` is None."""
        if now is None:
            return self._prices(self.demand.counts)
        return self._observed_prices(now)

    def mark_warm(self, block_ids: Sequence[str], now: float) -> None:
        """The prefix of ``block_ids`` was just written or refreshed outside a route (the warmer, keep-warm),
        at ``now`` on the clock routes are given. Non-corpus blocks (instructions, tools) are ignored."""
        key = tuple(b for b in block_ids if b not in NON_CORPUS_BLOCKS)
        if not key:
            return
        tokens = self.corpus.total_tokens if key == ("full",) else sum(self.corpus.block(b).tokens for b in key)
        with self._state_lock:
            self._touch(key, tokens, now)

    def observed_rate(self) -> float:
        """Questions per second over the last ``RATE_WINDOW`` arrivals seen (the prior before two)."""
        times = self._arrivals
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        if span > 0:
            return (len(times) - 1) / span
        return self.config.questions_per_ttl / self._horizon_prior

    def _observed_prices(self, now: float) -> np.ndarray:
        """Warm runs at the read price; a cold one pays the write of what no warm prefix shares with it,
        spread over the questions expected to reuse it while cached (module docstring, 3)."""
        counts = self.demand.counts
        share = (counts + PRIOR_QUESTIONS / len(counts)) / (float(counts.sum()) + PRIOR_QUESTIONS)
        with self._state_lock:
            reuses = share * self.observed_rate() * self._horizon(now)
            cold = np.array([self._cold_share(run.block_ids, run.tokens, now) for run in self.runs])
        price = self.read_price + (self.write_price - self.read_price) * cold / (1.0 + reuses)
        tokens = np.array([run.tokens for run in self.runs])
        return np.where(tokens < self.min_cacheable, 1.0, np.round(price, 6))

    # --- observed cache state (module docstring, 3) ---------------------------------------

    @property
    def _horizon_prior(self) -> float:
        ttl = self.profile.ttl_s
        return NO_TTL_HORIZON_S if ttl is None else ttl

    def _horizon(self, now: float) -> float:
        """How long a prefix written now stays cached: the TTL, or (self-hosted) the KV capacity over the
        rate prefills were observed to fill it, at most ``NO_TTL_HORIZON_S``."""
        if self.profile.ttl_s is not None:
            return self.profile.ttl_s
        span = now - self._writes[0][0] if self._writes else 0.0
        written = sum(t for _, t in self._writes)
        if span <= 0 or written <= 0:
            return NO_TTL_HORIZON_S
        return min(self.config.kv_capacity_tokens / (written / span), NO_TTL_HORIZON_S)

    def _is_warm(self, key: tuple[str, ...], now: float) -> bool:
        if self.profile.ttl_s is None:
            return key in self._resident
        sent = self._sent.get(key)
        return sent is not None and now - sent < self.profile.ttl_s

    def _shared_owner(self, key: tuple[str, ...], now: float) -> tuple[tuple[str, ...] | None, int]:
        """The warm prefix sharing the most leading blocks with ``key`` (the replay's lookup: its shared
        part at least the minimum cacheable, within the vendor's lookback) and how many blocks it shares."""
        live = self._resident if self.profile.ttl_s is None else self._sent
        lookback = self.profile.max_lookback_blocks
        trailing = sum(1 for b in NON_CORPUS_BLOCKS[1:] if b in self.corpus.blocks)
        best, owner = 0, None
        for other in sorted(k for k in live if k and k[0] == key[0] and k != key):
            if not self._is_warm(other, now):
                continue
            n = 0
            for x, y in zip(other, key, strict=False):
                if x != y:
                    break
                n += 1
            if lookback is not None and len(key) + trailing - n > lookback:
                continue
            if n > best and self._tokens_of(key[:n]) >= self.min_cacheable:
                best, owner = n, other
        return owner, best

    def _tokens_of(self, key: tuple[str, ...]) -> int:
        return self.corpus.total_tokens if key == ("full",) else sum(self.corpus.block(b).tokens for b in key)

    def _cold_share(self, key: tuple[str, ...], tokens: int, now: float) -> float:
        """The share of ``key``'s tokens a send at ``now`` would write (0: warm)."""
        if self._is_warm(key, now) or tokens <= 0:
            return 0.0
        _, shared = self._shared_owner(key, now)
        return 1.0 - self._tokens_of(key[:shared]) / tokens

    def _charge(self, key: tuple[str, ...], tokens: int, now: float) -> tuple[float, bool]:
        """What a send of ``key`` at ``now`` pays per stable token, and whether it was wholly warm."""
        if not key or tokens < self.min_cacheable:
            return 1.0, False
        cold = self._cold_share(key, tokens, now)
        return self.read_price + (self.write_price - self.read_price) * cold, cold == 0.0

    def _send(self, key: tuple[str, ...], tokens: int, now: float, charge: float, warm: bool) -> None:
        """A route sent ``key`` at ``now``: it is cached from now on, and the prefix it read is refreshed."""
        if not warm:
            owner, _ = self._shared_owner(key, now)
            if owner is not None:
                self._touch(owner, self._tokens_of(owner), now)
            written = round(tokens * (charge - self.read_price) / (self.write_price - self.read_price or 1.0))
            self._writes.append((now, written))
        self._touch(key, tokens, now)

    def _touch(self, key: tuple[str, ...], tokens: int, now: float) -> None:
        if self.profile.ttl_s is None:
            self._resident[key] = tokens
            self._resident.move_to_end(key)
            while sum(self._resident.values()) > self.config.kv_capacity_tokens and len(self._resident) > 1:
                self._resident.popitem(last=False)
            return
        self._sent[key] = now
        for stale in [k for k, t in self._sent.items() if now - t >= self.profile.ttl_s]:
            del self._sent[stale]

    def _prices(self, counts: np.ndarray) -> np.ndarray:
        per_ttl = self.config.questions_per_ttl
        share = (counts + per_ttl / len(counts)) / (float(counts.sum()) + per_ttl)
        price = self.read_price + self.write_price * np.exp(-share * per_ttl)
        tokens = np.array([run.tokens for run in self.runs])
        return np.where(tokens < self.min_cacheable, 1.0, np.round(price, 6))  # too short to cache: plain input

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
        # what a conversation's planner leaves unused must not push a whole corpus out of its first turn
        fits = self.corpus.total_tokens + estimate_margin(self.window) <= self.budget
        if not fits:
            if self.config.mode == "full":
                raise RoutingError(
                    f"router.mode is 'full' but corpus {self.corpus.name!r} has {self.corpus.total_tokens} tokens, "
                    f"more than the {self.budget}-token budget; use mode 'auto' or 'blocks'"
                )
            return None
        return ("full",) if self.corpus.full_block_id else tuple(self.blocks)

    def _walks(
        self, order: np.ndarray, runs: list[int], price: np.ndarray, budget: int | None = None, floor: float = 0.0
    ) -> dict[int, _Walk]:
        """The walk of module docstring, 4, for each of ``runs`` over the ranked chunks, within ``budget``
        tokens of run and tail (default: the router's), and at least as deep as top-k of ``floor`` tokens."""
        budget = self.budget if budget is None else budget
        sizes = self._chunk_tokens[order]
        total = np.cumsum(sizes)
        need = int(np.searchsorted(total, floor, side="right")) - 1  # the last rank top-k of `floor` holds
        out: dict[int, _Walk] = {}
        for r in dict.fromkeys(runs):
            inside = np.cumsum(np.where(self._in_run[r, order], sizes, 0))
            room = budget - self.runs[r].tokens
            allowance = price[r] * self.runs[r].tokens
            depth = int(np.searchsorted(inside, allowance, side="left"))  # first rank where the price is used up
            depth = max(depth, need)
            complete = depth < len(order) and int(total[depth] - inside[depth]) <= room
            out[r] = _Walk(depth if complete else len(order) - 1, complete)
        return out

    def _blocks_route(
        self,
        run: int,
        walk: _Walk,
        order: np.ndarray,
        fused: np.ndarray,
        reason: str,
        scores: dict[str, float],
    ) -> Route:
        """Run ``run`` plus its tail: the walk's chunks outside it, then more of the best until ``fill``."""
        chosen = self.runs[run]
        left = self.budget - chosen.tokens
        filled_at = self.budget - int(self.config.fill * self.budget)  # room left once the route fills
        cap = self.config.top_k or len(order)
        picked: list[int] = []
        for rank, i in enumerate(order):
            if len(picked) >= cap or (rank > walk.depth and left <= filled_at):
                break
            size = int(self._chunk_tokens[i])
            if not self._in_run[run, i] and size <= left:
                picked.append(int(i))
                left -= size
        if chosen.tokens < self.min_cacheable:
            reason += f"; below the backend's {self.min_cacheable}-token minimum cacheable prefix"
        return self.make_route("blocks", chosen.block_ids, self._snippets(fused, picked), reason, scores)

    def _top_chunks(self, order: np.ndarray, tokens: int, eligible: np.ndarray | None = None) -> list[int]:
        """The best (``eligible``) chunks that fit ``tokens`` (a chunk too big for what is left is
        skipped), at most ``top_k``: every route's top-k and every conversation turn's excerpts."""
        picked, left = [], tokens
        smallest = int(self._chunk_tokens.min()) if len(self._chunk_tokens) else 1
        cap = self.config.top_k or len(order)
        for i in order:
            if left < smallest or len(picked) >= cap:
                break
            if (eligible is None or eligible[i]) and self._chunk_tokens[i] <= left:
                picked.append(int(i))
                left -= int(self._chunk_tokens[i])
        return picked

    @cached_property
    def _chunk_position(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.corpus.chunks)}

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

    def make_route(
        self,
        mode: str,
        block_ids: tuple[str, ...],
        snippets: tuple[Snippet, ...],
        reason: str,
        scores: dict[str, float] | None = None,
        sticky: bool = False,
    ) -> Route:
        """A route whose documents and tokens are exactly those of ``block_ids`` and ``snippets``."""
        stable = self.corpus.documents_of(block_ids) if mode != "full" else list(self._all_documents)
        documents = tuple(dict.fromkeys([*stable, *(s.doc_id for s in snippets)]))
        stable_tokens = sum(self.corpus.block(b).tokens for b in block_ids)
        tokens = RouteTokens(stable=stable_tokens, tail=sum(s.tokens for s in snippets))
        margin = None
        if scores and len(scores) > 1:
            top = sorted(scores.values(), reverse=True)
            margin = top[0] - top[1]
        return Route(mode, block_ids, scores or {}, margin, sticky, snippets, reason, documents, tokens)  # type: ignore[arg-type]

    def _fused_of(self, text: str) -> np.ndarray:
        """One text's fused scores, remembered (a conversation re-scores its recent questions every turn)."""
        key = (text, self.config.dense_weight)
        with self._memo_lock:  # requests route on their own threads
            fused = self._fused_memo.get(key)
        if fused is None:
            fused = np.asarray(self.index.scores(text, self.config.dense_weight).fused, dtype=np.float64)
            with self._memo_lock:
                self._fused_memo[key] = fused
        return fused

    def _chunks_in(self, block_ids: tuple[str, ...]) -> np.ndarray:
        """Per chunk: is it inside one of ``block_ids`` (``full`` holds every chunk)."""
        if "full" in block_ids:
            return np.ones(len(self.corpus.chunks), dtype=bool)
        wanted = {self._position[b] for b in block_ids if b in self._position}
        return np.isin(self._chunk_block, list(wanted)) if wanted else np.zeros(len(self._chunk_block), dtype=bool)
