"""Router evaluation: evidence recall against what the prompts cost, beside fused top-k retrieval.

A QA file is JSON lines ``{"id", "question", "gold_doc_ids": [doc ids]}`` (``gold``
is read too; an optional ``session`` groups follow-ups). For each context window:

- **router**: the router is built for that window and routes the questions in
  arrival order (the previous route is passed only within a session). Its prompt
  is the stable prefix (instructions, corpus blocks, tools, examples) plus the
  tail snippets; its documents are the blocks' documents and the snippets'.
- **top-k**: fused dense+BM25 scores over the same chunk index; the best chunks in
  score order while they fit a token budget, after the non-corpus stable blocks.
  *At equal tokens* the budget gives the router's mean prompt tokens; *at equal
  cost* it is binary-searched so top-k's replayed $/1k equals the router's (top-k
  is capped by the window: it cannot buy more than fits).

**Recall** is the share of a question's gold documents in the prompt (all of them
matter for a multi-hop question), averaged over questions; the **hit rate** beside
it counts a question when any gold document is there. **Cost** replays the prompts
in arrival order (evenly spaced at ``rate_per_min``) against the vendor's cache
rules (:mod:`ragcache.cache.replay`), starting cold: nothing is warmed, and no
setting is chosen from the measured questions. Question and output tokens are the
same for both strategies and are left out of tokens and cost. Several rates
(``eval-router --rates``) replay the same questions once per rate, each rate with
its own routers (their prices depend on the traffic), one report row per rate and window.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragcache.cache.replay import CacheRules, ReplayRequest, ReplayResult, arrivals, replay
from ragcache.errors import CorpusError
from ragcache.prompt import INSTRUCTIONS_BLOCK, NON_CORPUS_BLOCKS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ragcache.corpus.manifest import CompiledCorpus
    from ragcache.router import Router
    from ragcache.router.index import ChunkIndex

__all__ = [
    "QAItem",
    "TopK",
    "budget_for_cost",
    "evaluate_corpus",
    "evaluate_rates",
    "evaluate_windows",
    "gold_recall",
    "load_qa",
    "non_corpus_blocks",
    "route_all",
]

_SEARCH_STEPS = 40


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    gold: tuple[str, ...]
    session: str | None = None


@dataclass(frozen=True)
class Prompted:
    """One question's prompt under a strategy: stable blocks ``(id, tokens)``, tail tokens, documents."""

    blocks: tuple[tuple[str, int], ...]
    tail_tokens: int
    documents: frozenset[str]
    # What the router assumed its stable prefix costs per token on the cache state it observed
    # (``Route.pricing["charge"]``; None: it routed without a clock, or has no corpus prefix).
    charge: float | None = None

    @property
    def tokens(self) -> int:
        return sum(t for _, t in self.blocks) + self.tail_tokens


def load_qa(path: str | Path, corpus: CompiledCorpus | None = None) -> list[QAItem]:
    """Read a QA file; with ``corpus``, every gold document must exist in it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read QA file: {exc.strerror or exc}") from exc
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            gold = row["gold_doc_ids"] if "gold_doc_ids" in row else row["gold"]
            if isinstance(gold, str) or not gold:
                raise TypeError("gold documents must be a non-empty list")
            session = row.get("session")
            items.append(
                QAItem(
                    str(row.get("id", number)),
                    str(row["question"]),
                    tuple(map(str, gold)),
                    None if session is None else str(session),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorpusError(
                f"{path}:{number}: expected {{'question': str, 'gold_doc_ids': [doc ids]}}: {exc}"
            ) from exc
    if not items:
        raise CorpusError(f"{path}: no questions")
    if corpus is not None:
        missing = sorted({g for item in items for g in item.gold} - set(corpus.documents))
        if missing:
            raise CorpusError(f"{path}: gold documents not in corpus {corpus.name!r}: {', '.join(missing[:5])}")
    return items


def gold_recall(documents: frozenset[str] | set[str], gold: tuple[str, ...]) -> float:
    """Share of ``gold`` (distinct ids) inside ``documents``."""
    wanted = set(gold)
    return len(wanted & documents) / len(wanted) if wanted else 0.0


def non_corpus_blocks(corpus: CompiledCorpus) -> tuple[tuple[str, int], ...]:
    """The stable blocks every prompt carries besides the corpus: instructions, tools, examples."""
    return tuple((b, corpus.block(b).tokens) for b in NON_CORPUS_BLOCKS if b in corpus.blocks)


def route_all(
    router: Router, corpus: CompiledCorpus, items: list[QAItem], times: Sequence[float] | None = None
) -> list[Prompted]:
    """Route every question in arrival order, each as a single question (``eval-chat`` replays conversations).

    ``times``: each question's arrival (s) on the replay's clock, passed to the router as ``now`` so it
    prices runs by the cache state of the replay itself (None: by its demand prior)."""
    overhead = non_corpus_blocks(corpus)
    head = tuple(b for b in overhead if b[0] == INSTRUCTIONS_BLOCK)
    rest = tuple(b for b in overhead if b[0] != INSTRUCTIONS_BLOCK)
    if times is not None and len(times) != len(items):
        raise ValueError(f"{len(times)} arrival times for {len(items)} questions")
    out = []
    for n, item in enumerate(items):
        route = router.route(item.question, now=None if times is None else times[n])
        blocks = tuple((b, corpus.block(b).tokens) for b in route.block_ids)
        docs = frozenset(corpus.documents_of(route.block_ids)) | {s.doc_id for s in route.snippets}
        charge = route.pricing.get("charge") if route.block_ids else None
        out.append(Prompted(head + blocks + rest, sum(s.tokens for s in route.snippets), docs, charge))
    return out


def assumed_usd_per_1k(prompts: Sequence[Prompted], rules: CacheRules) -> float:
    """$/1k questions as the router assumed them: each prompt's stable prefix at the charge it recorded
    (a top-k prompt's instructions and tools as plain input), the tail as plain input. Beside the
    replay's ``usd_per_1k`` it shows whether the router priced the cache it actually got; what it does
    not model (storage billing, a top-k prompt's cached instructions) is the difference."""
    tokens = sum(
        (p.charge if p.charge is not None else 1.0) * (p.tokens - p.tail_tokens) + p.tail_tokens for p in prompts
    )
    return 1000.0 * tokens * rules.input / 1_000_000 / len(prompts) if prompts else 0.0


class TopK:
    """Fused top-k over the chunk index, for any token budget, without re-scoring.

    Per question it keeps the running token total of its chunks in score order and,
    for each gold document, the rank of its first chunk: with budget ``T`` the
    prompt holds the ``k`` best chunks whose total fits ``T``, and a gold document is
    in it when its first chunk ranks below ``k``.
    """

    def __init__(self, corpus: CompiledCorpus, index: ChunkIndex, items: list[QAItem], dense_weight: float) -> None:
        chunks = corpus.chunks
        if not chunks:
            raise CorpusError(f"corpus {corpus.name!r} has no chunk index; rebuild it without --no-index")
        sizes = np.array([c.tokens for c in chunks], dtype=np.int64)
        doc_of = np.array([c.doc_id for c in chunks], dtype=object)
        self.stable = non_corpus_blocks(corpus)
        self.cumulative: list[np.ndarray] = []
        self.first_rank: list[np.ndarray] = []
        for item in items:
            fused = index.scores(item.question, dense_weight).fused
            order = np.lexsort((np.arange(len(fused)), -np.asarray(fused, dtype=np.float64)))
            self.cumulative.append(np.concatenate(([0], np.cumsum(sizes[order]))))
            ranked = doc_of[order]
            self.first_rank.append(np.array([_first(ranked, g) for g in dict.fromkeys(item.gold)], dtype=np.int64))

    def figures(self, budget: int) -> tuple[list[float], list[bool], list[int]]:
        """(recall, any-gold hit, corpus tokens) per question at ``budget`` corpus tokens."""
        recalls, hits, tokens = [], [], []
        for cumulative, ranks in zip(self.cumulative, self.first_rank, strict=True):
            k = int(np.searchsorted(cumulative, budget, side="right")) - 1
            inside = ranks < k
            recalls.append(float(inside.mean()) if len(ranks) else 0.0)
            hits.append(bool(inside.any()))
            tokens.append(int(cumulative[k]))
        return recalls, hits, tokens

    def requests(self, budget: int, times: list[float]) -> list[ReplayRequest]:
        """The replay requests at ``budget``: the non-corpus stable blocks, then the chunks as tail."""
        _, _, tokens = self.figures(budget)
        return [ReplayRequest(t, self.stable, n) for t, n in zip(times, tokens, strict=True)]


def _first(ranked: np.ndarray, doc: str) -> int:
    where = np.flatnonzero(ranked == doc)
    return int(where[0]) if len(where) else len(ranked)


def strategy_figures(prompts: list[Prompted], items: list[QAItem], cost: ReplayResult) -> dict[str, Any]:
    """Recall, hit rate, mean prompt tokens and $/1k for one strategy's prompts."""
    pairs = list(zip(prompts, items, strict=True))
    return {
        "recall": round(statistics.fmean(gold_recall(p.documents, i.gold) for p, i in pairs), 4),
        "hit_rate": round(statistics.fmean(bool(p.documents & set(i.gold)) for p, i in pairs), 4),
        "prompt_tokens_mean": round(statistics.fmean(p.tokens for p in prompts), 1),
        "usd_per_1k": round(cost.usd_per_1k, 4),
        "cost": cost.to_dict(),
    }


def topk_figures(topk: TopK, budget: int, times: list[float], rules: CacheRules) -> dict[str, Any]:
    """Top-k's figures at ``budget`` corpus tokens per question."""
    recalls, hits, tokens = topk.figures(budget)
    cost = replay(topk.requests(budget, times), rules)
    stable = sum(t for _, t in topk.stable)
    return {
        "recall": round(statistics.fmean(recalls), 4),
        "hit_rate": round(statistics.fmean(hits), 4),
        "prompt_tokens_mean": round(stable + statistics.fmean(tokens), 1),
        "usd_per_1k": round(cost.usd_per_1k, 4),
        "corpus_budget": int(budget),
        "cost": cost.to_dict(),
    }


def budget_for_cost(topk: TopK, target_usd_per_1k: float, cap: int, times: list[float], rules: CacheRules) -> int:
    """The largest top-k budget (≤ ``cap``) whose replayed $/1k does not exceed the target."""
    low, high = 0, max(cap, 0)
    if replay(topk.requests(high, times), rules).usd_per_1k <= target_usd_per_1k:
        return high
    for _ in range(_SEARCH_STEPS):
        if high - low <= 1:
            break
        mid = (low + high) // 2
        if replay(topk.requests(mid, times), rules).usd_per_1k <= target_usd_per_1k:
            low = mid
        else:
            high = mid
    return low


def evaluate_windows(
    corpus: CompiledCorpus,
    items: list[QAItem],
    make_router: Callable[[int], Router],
    topk: TopK,
    windows: list[int],
    *,
    rules: CacheRules,
    rate_per_min: float,
    reserved_tokens: int,
) -> dict[str, Any]:
    """The report for every window (the JSON shape of ``ragcache eval-router --json``).

    ``reserved_tokens`` (output + history allowance) is what a window keeps free
    besides the prompt; the rest, less the non-corpus blocks, is the corpus budget
    that ``budget_used_share`` and top-k's cap are measured against.
    """
    times = arrivals(len(items), rate_per_min)
    stable = sum(t for _, t in non_corpus_blocks(corpus))
    rows = []
    for window in windows:
        budget = max(window - reserved_tokens - stable, 0)
        prompts = route_all(make_router(window), corpus, items, times)
        cost = replay((ReplayRequest(t, p.blocks, p.tail_tokens) for t, p in zip(times, prompts, strict=True)), rules)
        router = strategy_figures(prompts, items, cost)
        corpus_tokens = [p.tokens - stable for p in prompts]
        router["budget_used_share"] = round(statistics.fmean(corpus_tokens) / budget, 4) if budget else 0.0
        router["distinct_prefixes"] = len({tuple(b for b, _ in p.blocks) for p in prompts})
        if times and all(p.charge is not None or len(p.blocks) == len(non_corpus_blocks(corpus)) for p in prompts):
            router["assumed_usd_per_1k"] = round(assumed_usd_per_1k(prompts, rules), 4)
        equal_tokens = max(round(statistics.fmean(corpus_tokens)), 0)
        equal_cost = budget_for_cost(topk, router["usd_per_1k"], budget, times, rules)
        rows.append(
            {
                "window": window,
                "rate_per_min": rate_per_min,
                "corpus_budget": budget,
                "router": router,
                "topk_equal_tokens": topk_figures(topk, equal_tokens, times, rules),
                "topk_equal_cost": topk_figures(topk, equal_cost, times, rules),
            }
        )
    return {
        "corpus": corpus.name,
        "corpus_tokens": corpus.total_tokens,
        "questions": len(items),
        "vendor_model": rules.model,
        "cache_ttl_s": rules.ttl_s if math.isfinite(rules.ttl_s) else None,  # None: no TTL (self-hosted LRU)
        "profile": rules.profile.to_dict() if rules.profile is not None else None,
        "rate_per_min": rate_per_min,
        "windows": rows,
    }


def evaluate_rates(
    corpus: CompiledCorpus,
    items: list[QAItem],
    make_router: Callable[[int, float], Router],
    topk: TopK,
    windows: list[int],
    *,
    rules: CacheRules,
    rates_per_min: Sequence[float],
    reserved_tokens: int,
) -> dict[str, Any]:
    """:func:`evaluate_windows` at each arrival rate, one report whose rows carry ``rate_per_min``.

    The rows are ordered by rate, then window; ``rates_per_min`` lists the rates. With
    one rate the report is :func:`evaluate_windows`'s, so ``--rate-per-min`` keeps its shape.
    A router is built per (window, rate): its prices depend on the traffic it expects.
    """
    rates = sorted(set(rates_per_min))
    if not rates or rates[0] <= 0:
        raise ValueError(f"arrival rates must be positive questions per minute, got {list(rates_per_min)}")
    reports = [
        evaluate_windows(
            corpus,
            items,
            lambda window, rate=rate: make_router(window, rate),
            topk,
            windows,
            rules=rules,
            rate_per_min=rate,
            reserved_tokens=reserved_tokens,
        )
        for rate in rates
    ]
    report = dict(reports[0])
    report["rates_per_min"] = rates
    report["windows"] = [row for r in reports for row in r["windows"]]
    if len(rates) > 1:
        del report["rate_per_min"]  # one figure no longer describes the run; each row names its rate
    return report


def topk_curve(topk: TopK, budgets: list[int], rate_per_min: float, rules: CacheRules) -> list[tuple[float, float]]:
    """(usd_per_1k, recall) of top-k at each budget, for the plot."""
    times = arrivals(len(topk.cumulative), rate_per_min)
    out = []
    for budget in budgets:
        recalls, _, _ = topk.figures(budget)
        out.append((replay(topk.requests(budget, times), rules).usd_per_1k, statistics.fmean(recalls)))
    return out


def evaluate_corpus(
    corpus: CompiledCorpus,
    items: list[QAItem],
    windows: list[int],
    *,
    config: Any,
    rules: CacheRules,
    rates_per_min: Sequence[float],
) -> tuple[dict[str, Any], TopK]:
    """Build one router per window and rate from ``config`` (a :class:`~ragcache.config.Config`), evaluate them all."""
    from ragcache.backends.base import Capabilities
    from ragcache.router import create_router
    from ragcache.router.embeddings import load_embedder
    from ragcache.router.index import open_index

    if not windows or min(windows) <= 0:
        raise ValueError(f"windows must be positive token counts, got {windows}")
    router_config = config.router
    reserved = config.backend.max_output_tokens

    def make_router(window: int, rate_per_min: float) -> Router:
        settings = router_config
        if "window_tokens" in type(router_config).model_fields:  # the config override must not beat the window
            # The router prices cold runs by the traffic this replay assumes: questions per cache lifetime.
            per_ttl = rate_per_min * rules.planning_ttl_s / 60
            settings = router_config.model_copy(update={"window_tokens": window, "questions_per_ttl": per_ttl})
        capabilities = Capabilities(
            context_window=window, min_cacheable_tokens=rules.min_cacheable_tokens, ttl_s=rules.planning_ttl_s
        )
        return create_router(corpus, settings, capabilities, reserved, profile=rules.profile)

    index = open_index(corpus, load_embedder(router_config.embedding_model))
    topk = TopK(corpus, index, items, router_config.dense_weight)
    report = evaluate_rates(
        corpus,
        items,
        make_router,
        topk,
        sorted(set(windows)),
        rules=rules,
        rates_per_min=rates_per_min,
        reserved_tokens=reserved + router_config.history_allowance,
    )
    return report, topk
