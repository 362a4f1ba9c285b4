"""The strategies a bench compares, all on one backend and one workload.

- ``ragcache``: the router picks a stable prefix (full corpus, category block or
  a canonical stack), per-question snippets go after it; the warm set learnt
  from the warm-up part of the workload is warmed before the run.
- ``naive-rag``: the common pattern (LlamaIndex's default chat QA prompt): the
  top chunks from the same faiss index, dense similarity, pasted into the user
  message before the question; so the context changes with every question. Its
  chunk budget is matched per request to ragcache's route for the same question
  (routed as ragcache's session would route it, without counting demand):
  ``match="cost"`` (default) gives it the corpus tokens that cost what ragcache's
  do with its prefix read from cache (the default profile's read price × stable blocks + tail,
  "equal cost"); ``match="tokens"`` gives it all of ragcache's corpus tokens
  ("equal tokens", which costs it far more).
- ``full``: the whole corpus as the stable prefix, when it fits the window.
- ``no-cache``: ragcache's prompts with caching defeated: a second local
  backend whose prefix store is disabled (behind ragcache's own router, so the
  routes match), or a fresh ``cache_salt`` per request on engines that take one (vLLM).
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from ragcache.backends.base import CacheUsage, GenerationOptions
from ragcache.backends.profile import default_profile
from ragcache.cache.warmset import TrafficLog
from ragcache.errors import ConfigError
from ragcache.hashing import chain_hash, content_hash
from ragcache.prompt import Message, Prompt, Route, Segment, SegmentKind, assemble_prompt

if TYPE_CHECKING:
    from ragcache.app import RagCache
    from ragcache.bench.workload import WorkloadItem

__all__ = ["NAIVE_MATCHES", "STRATEGIES", "Outcome", "Strategy", "add_usage", "create_strategies"]

STRATEGIES = ("ragcache", "naive-rag", "full", "no-cache")
NAIVE_MATCHES = ("cost", "tokens")
WARM_MODES = ("traffic", "all", "none")


@dataclass(frozen=True)
class Outcome:
    """What one strategy got back for one request."""

    text: str
    usage: CacheUsage
    ttft_s: float
    latency_s: float
    prefix: str
    route: str
    evidence_doc_ids: tuple[str, ...]


def add_usage(a: CacheUsage, b: CacheUsage) -> CacheUsage:
    """Sum two usages (warm-up totals)."""
    return CacheUsage(
        input_tokens=a.input_tokens + b.input_tokens,
        cached_tokens=a.cached_tokens + b.cached_tokens,
        cache_write_tokens=a.cache_write_tokens + b.cache_write_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
    )


class Strategy(ABC):
    """One way of answering the workload; ``answer`` is called once per request."""

    name: ClassVar[str]

    def __init__(self, app: RagCache, options: GenerationOptions) -> None:
        self.app = app
        self.options = options

    def warm(self, items: Sequence[WorkloadItem]) -> CacheUsage:
        """Prepare before the run (default: nothing)."""
        return CacheUsage()

    @abstractmethod
    def answer(self, item: WorkloadItem, index: int, history: tuple[Message, ...]) -> Outcome:
        """Answer one request given this strategy's own session history."""

    def _generate(self, prompt: Prompt, prefix: str, route: str, evidence: tuple[str, ...]) -> Outcome:
        generation = self.app.backend.generate(prompt, self.options)
        return Outcome(
            generation.text, generation.usage, generation.ttft_s, generation.latency_s, prefix, route, evidence
        )


class RagcacheStrategy(Strategy):
    """The router's stable prefixes, warmed before the run.

    ``warm="traffic"`` routes the warm-up items (the workload's first part, or
    for an oracle run the measured questions themselves) as sessions do, counts
    them in a :class:`~ragcache.cache.warmset.TrafficLog` and warms the capped
    warm set it yields, as the server does from real traffic; ``"all"`` warms
    every enumerable prefix; ``"none"`` nothing. TTFT includes routing.
    """

    name = "ragcache"
    observe: ClassVar[bool] = True  # this strategy's questions are the traffic the router's demand counts

    def __init__(self, app: RagCache, options: GenerationOptions, *, warm: str = "traffic") -> None:
        super().__init__(app, options)
        if warm not in WARM_MODES:
            raise ConfigError(f"unknown warm-up mode {warm!r}; valid: {', '.join(WARM_MODES)}")
        self.warm_mode = warm
        self.warmed = 0

    def warm(self, items: Sequence[WorkloadItem]) -> CacheUsage:
        prompts: list[Prompt] = []
        if self.warm_mode == "all":
            prompts = self.app.prefixes()
        elif self.warm_mode == "traffic":
            prompts = self.app.warm_set(self.traffic_of(items))
        self.warmed = len(prompts)
        total = CacheUsage()
        for prompt in prompts:
            total = add_usage(total, self.app.backend.warm(prompt))
        return total

    def traffic_of(self, items: Sequence[WorkloadItem]) -> TrafficLog:
        """The traffic ``items`` would make: each routed as its session would route it."""
        traffic = TrafficLog(self.app.corpus.fingerprint, self.app.config.cache.warm_half_life_requests)
        sessions: dict[str, tuple[str, ...]] = {}
        for item in items:  # a conversation keeps its first turn's prefix (ragcache/conversation.py)
            if not item.turn or item.session not in sessions:
                sessions[item.session] = self.app.route(item.question, observe=True).block_ids
            traffic.record(sessions[item.session])
        return traffic

    def answer(self, item: WorkloadItem, index: int, history: tuple[Message, ...]) -> Outcome:
        began = time.perf_counter()
        plan = self.app.plan_turn(item.question, history=history, observe=self.observe)
        prompt = self.app.turn_prompt(plan)
        routing_s = time.perf_counter() - began
        route = plan.route.mode
        out = self._generate(prompt, prompt.prefix_fingerprint, route, self.app.sources(prompt))
        return replace(out, ttft_s=out.ttft_s + routing_s, latency_s=out.latency_s + routing_s)


class NoCacheStrategy(RagcacheStrategy):
    """ragcache's prompts with the cache defeated (own uncached app, or a salt per request)."""

    name = "no-cache"
    observe: ClassVar[bool] = False  # same router as ragcache: route its questions without counting them twice

    def __init__(self, app: RagCache, options: GenerationOptions, *, salted: bool) -> None:
        super().__init__(app, options, warm="none")
        self.salted = salted
        self.run_id = uuid.uuid4().hex[:12]  # only salts requests; never hashed into anything kept

    def warm(self, items: Sequence[WorkloadItem]) -> CacheUsage:
        return CacheUsage()

    def answer(self, item: WorkloadItem, index: int, history: tuple[Message, ...]) -> Outcome:
        if self.salted:
            self.options = replace(self.options, cache_salt=f"nocache-{self.run_id}-{index}")
        return super().answer(item, index, history)


class FullStrategy(Strategy):
    """The whole corpus as one stable prefix."""

    name = "full"

    def __init__(self, app: RagCache, options: GenerationOptions) -> None:
        super().__init__(app, options)
        corpus = app.corpus
        if corpus.full_block_id is None:
            raise ConfigError(f"strategy 'full': corpus {corpus.name!r} has no full block (too large for its budget)")
        base = app.prefixes()[0].stable
        self.stable = tuple(s for s in base if s.kind != SegmentKind.CORPUS)
        position = next((i for i, s in enumerate(base) if s.kind == SegmentKind.CORPUS), len(self.stable))
        full = Segment(SegmentKind.CORPUS, corpus.block_text("full"), block_id="full")
        self.stable = (*self.stable[:position], full, *self.stable[position:])
        tokens = sum(corpus.block(s.block_id).tokens for s in self.stable if s.block_id in corpus.blocks)
        window = app.backend.capabilities.context_window
        if tokens + options.max_tokens > window:
            raise ConfigError(
                f"strategy 'full': the full corpus prefix has {tokens} tokens; "
                f"it does not fit the backend's {window}-token window"
            )

    def warm(self, items: Sequence[WorkloadItem]) -> CacheUsage:
        return self.app.backend.warm(assemble_prompt(self.stable, ""))

    def answer(self, item: WorkloadItem, index: int, history: tuple[Message, ...]) -> Outcome:
        prompt = assemble_prompt(self.stable, item.question, history=history)
        return self._generate(prompt, prompt.prefix_fingerprint, "full", self.app.sources(prompt))


class NaiveRagStrategy(Strategy):
    """Top chunks by dense similarity, pasted before the question, LlamaIndex-style."""

    name = "naive-rag"

    def __init__(
        self, app: RagCache, options: GenerationOptions, *, budget: int | None = None, match: str = "cost"
    ) -> None:
        super().__init__(app, options)
        from llama_index.core.prompts.chat_prompts import CHAT_TEXT_QA_PROMPT

        if match not in NAIVE_MATCHES:
            raise ConfigError(f"unknown naive-rag match {match!r}; valid: {', '.join(NAIVE_MATCHES)}")
        system, user = CHAT_TEXT_QA_PROMPT.message_templates
        self.system = Segment(SegmentKind.INSTRUCTIONS, str(system.content), block_id="naive-system")
        self.template = str(user.content)
        self.budget = budget
        self.match = match
        self.chunks = {c.id: c for c in app.corpus.chunks}

    def _budget(self, item: WorkloadItem, history: tuple[Message, ...]) -> int:
        """A fixed budget, or ragcache's turn for this request turned into corpus tokens (``match``)."""
        if self.budget is not None:
            return self.budget  # nothing to match: no route needed
        plan = self.app.plan_turn(item.question, history=history, observe=False)  # ragcache counts demand once
        return self.matched_tokens(plan.route)

    def matched_tokens(self, route: Route) -> int:
        """Corpus tokens for naive RAG at ragcache's ``route``: equal tokens, or equal cost (cached prefix)."""
        stable, tail = self.corpus_tokens(route)
        if self.match == "tokens":
            return stable + tail
        # equal cost at vendor list prices (the bench prices every strategy at them): the default
        # profile's read price, not the engine's own (a self-hosted read is priced in prefill work)
        return int(default_profile().read_multiplier * stable) + tail

    def corpus_tokens(self, route: Route) -> tuple[int, int]:
        """(stable, tail) corpus tokens of ragcache's ``route``: its corpus blocks, and its snippets."""
        corpus = self.app.corpus
        stable = sum(corpus.block(b).tokens for b in route.block_ids if b in corpus.blocks)
        return stable, sum(s.tokens for s in route.snippets)

    def retrieve(self, question: str, budget: int) -> list[Any]:
        """Chunks in dense-similarity order until ``budget`` tokens are used."""
        picked, used = [], 0
        for chunk_id, _score in self.app.router.index.dense_search(question, len(self.chunks)):
            chunk = self.chunks[chunk_id]
            if used + chunk.tokens > budget:
                if picked:
                    break
                continue
            picked.append(chunk)
            used += chunk.tokens
        return picked

    def answer(self, item: WorkloadItem, index: int, history: tuple[Message, ...]) -> Outcome:
        budget = self._budget(item, history)
        began = time.perf_counter()
        chunks = self.retrieve(item.question, budget)
        retrieval_s = time.perf_counter() - began
        context = "\n\n".join(f"doc_id: {c.doc_id}\n\n{c.text.strip()}" for c in chunks)
        question = self.template.format(context_str=context, query_str=item.question)
        prompt = assemble_prompt((self.system,), question, history=history)
        prefix = chain_hash([self.system.sha256, content_hash(context)])
        evidence = tuple(dict.fromkeys(c.doc_id for c in chunks))
        out = self._generate(prompt, prefix, f"top-{len(chunks)}", evidence)
        return replace(out, ttft_s=out.ttft_s + retrieval_s, latency_s=out.latency_s + retrieval_s)


def create_strategies(
    names: list[str],
    app: RagCache,
    options: GenerationOptions,
    *,
    uncached_app: RagCache | None = None,
    naive_budget: int | None = None,
    warm: str = "traffic",
    own_apps: dict[str, RagCache] | None = None,
    naive_match: str = "cost",
) -> tuple[list[Strategy], list[str]]:
    """Build the named strategies (each on its app in ``own_apps`` where given, else ``app``);
    ones that cannot run here are dropped with a note why."""
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise ConfigError(f"unknown strategies {unknown or names}; valid: {', '.join(STRATEGIES)}")
    out: list[Strategy] = []
    notes: list[str] = []
    for name in dict.fromkeys(names):
        try:
            out.append(
                _create(name, (own_apps or {}).get(name, app), options, uncached_app, naive_budget, warm, naive_match)
            )
        except ConfigError as exc:
            notes.append(f"skipped {exc}")
    return out, notes


def _create(
    name: str,
    app: RagCache,
    options: GenerationOptions,
    uncached: RagCache | None,
    naive_budget: int | None,
    warm: str,
    naive_match: str = "cost",
) -> Strategy:
    if name == "ragcache":
        return RagcacheStrategy(app, options, warm=warm)
    if name == "naive-rag":
        return NaiveRagStrategy(app, options, budget=naive_budget, match=naive_match)
    if name == "full":
        return FullStrategy(app, options)
    salted = app.backend.profile.supports_salt
    if not salted and uncached is None:
        raise ConfigError("strategy 'no-cache': needs a salted engine (vllm) or an app with the cache disabled")
    return NoCacheStrategy(app if salted else uncached, options, salted=salted)
