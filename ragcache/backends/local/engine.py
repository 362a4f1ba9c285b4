"""The local engine: transformers + torch in this process, reusing prefix KV.

A prompt is rendered with the model's chat template and cut into blocks at
message boundaries (:mod:`~ragcache.backends.local.prompt`); prefill reuses the
longest chain of those blocks present in the
:class:`~ragcache.backends.local.kvstore.KVStore`, computes the rest into a
request cache of its own (:mod:`~ragcache.backends.local.request_cache`) and
stores the new blocks, so a second question over the same corpus only computes
its own tokens. The reused blocks are read in place, never copied: a request
cache holds only the request's own tokens, and the shared-prefix attention
(:mod:`~ragcache.backends.local.attention`) merges the attention over the
stored blocks with the attention over the request's own tokens. Concurrent
requests run together: the :class:`~ragcache.backends.local.batcher.Batcher`
prefills the waiting ones together (their own tokens packed into one row per
forward pass, in forwards of at most ``prefill_chunk`` tokens), then runs one
forward pass per step over all of them (continuous batching, up to
``backend.options.max_batch``); rows over the same stored prefix attend to it
in one matmul, and a request alone runs the same code as a batch of one, so its
greedy answer is the one it gets batched. Token choice and stop strings:
:mod:`~ragcache.backends.local.decoding`.
The model is loaded once per process and shared by every backend instance
(:mod:`~ragcache.backends.local.model`, which also holds the options).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ragcache import cancel, progress
from ragcache.backends.base import (
    Backend,
    CacheUsage,
    Capabilities,
    Generation,
    GenerationOptions,
    parse_options,
)
from ragcache.backends.local.batcher import Batcher, Sequence, plan_prefill
from ragcache.backends.local.decoding import StopMatcher, choose, sampler
from ragcache.backends.local.kvstore import KVBlock, KVStore, MatchResult
from ragcache.backends.local.model import LocalOptions, eos_ids, load_model, model_fingerprint
from ragcache.backends.local.persist import KVFiles, resolve_dir
from ragcache.backends.local.prompt import EncodedPrompt, PromptEncoder
from ragcache.errors import ContextLengthError, UnsupportedError
from ragcache.prompt import Prompt

if TYPE_CHECKING:
    import torch

    from ragcache.backends.local.graphs import ForwardGraphs
    from ragcache.config import BackendConfig, CacheConfig

__all__ = ["LocalBackend", "create"]

log = logging.getLogger(__name__)

PREFILL_CHUNK = 1024  # CPU: bounds the activations and attention scores of a (batched) prefill in host memory
PREFILL_CHUNK_CUDA = 32768  # GPU: a 32k prompt in one forward (FlashAttention's memory is linear in it)
INLINE_TOKENS = 512  # CPU: a request copies up to this many tokens of its private stored blocks (see RequestCache)


class LocalBackend(Backend):
    """In-process generation with block-aligned prefix reuse (see the module docstring)."""

    name = "local"
    Options = LocalOptions

    def __init__(self, config: BackendConfig, cache: CacheConfig) -> None:
        import torch

        from ragcache.backends.local.attention import enable_cascade_attention
        from ragcache.backends.local.linear import use_onednn_linear
        from ragcache.backends.local.request_cache import can_reuse_prefixes, plain_cache
        from ragcache.models import resolve_model_path

        options = parse_options(LocalOptions, config)  # before any slow loading: a typo fails fast
        self.config, self.cache_config, self.options = config, cache, options
        path = resolve_model_path(config.model)
        if options.threads:
            torch.set_num_threads(options.threads)  # process-wide: torch has one intra-op pool
        device = options.resolved_device()
        dtype = options.resolved_dtype(device)
        self.model, self.tokenizer = load_model(path, device, dtype)
        use_onednn_linear(self.model)  # float32 on CPU: batched matmuls through oneDNN (see linear.py)
        self.device = torch.device(device)
        self.model_name = config.model or path.name
        fingerprint = model_fingerprint(path, dtype)
        self.encoder = PromptEncoder(self.tokenizer, fingerprint)
        self.store: KVStore | None = None
        # prefix reuse and batched decode need every layer to keep its whole KV, and SDPA to switch from
        self._cascade = can_reuse_prefixes(self.model.config) and enable_cascade_attention(self.model)
        self._num_layers = len(plain_cache(self.model.config).layers)
        self.prefill_chunk = PREFILL_CHUNK_CUDA if self.device.type == "cuda" else PREFILL_CHUNK
        self.inline_tokens = 0 if self.device.type == "cuda" else INLINE_TOKENS  # CUDA: docs/bench/gpu §4a's path
        if cache.enabled and not self._cascade:
            log.warning("model %s has sliding-window/shared cache layers or no SDPA: prefix KV reuse is off", path.name)
        elif cache.enabled:
            files = None
            if cache.persist:
                files = KVFiles(resolve_dir(cache.persist_dir), fingerprint, device=self.device,
                                max_bytes=cache.persist_max_mb * 1024 * 1024)  # fmt: skip
            self.store = KVStore(cache.kv_budget_mb * 1024 * 1024, ttl_s=cache.ttl_s, files=files)
        window = config.context_window or int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._capabilities = Capabilities(
            context_window=window,
            min_cacheable_tokens=1,
            cache_block_tokens=1,  # blocks end at message boundaries: any whole prefix is cached exactly
            exact_prefix_tokens=True,
            ttl_s=cache.ttl_s,
            can_warm=self.store is not None,
        )
        self._eos = eos_ids(self.model, self.tokenizer)
        self._cache_arg = _cache_argument(self.model)
        self._forward_lock = threading.Lock()  # one forward at a time: two would just fight for the cores
        self.graphs = self._forward_graphs(options, device)
        self.batcher = Batcher(self._prefill_sequences, self._step, self._choose, self._eos, options.max_batch)

    # --- the Backend protocol ---------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def generate(self, prompt: Prompt, options: GenerationOptions) -> Generation:
        final = None
        for item in self.stream(prompt, options):
            if isinstance(item, Generation):
                final = item
        assert final is not None
        return final

    def stream(self, prompt: Prompt, options: GenerationOptions) -> Iterator[str | Generation]:
        """Queue the request in the batcher and yield its text deltas as its tokens come.

        Closing this generator early (a client went away) takes the sequence out of the batch; so does
        the caller's cancel event (:func:`ragcache.cancel.current`) while it waits for a token, which
        raises :class:`~ragcache.backends.local.batcher.Cancelled`: a request still queued leaves the
        queue at once instead of waiting for a prefill nobody will read.
        """
        started = time.perf_counter()
        encoded = self.encoder.encode(prompt)
        self._check_length(encoded.length)
        max_new = min(options.max_tokens, self.capabilities.context_window - encoded.length)
        seq = Sequence(encoded, options, max_new, generator=sampler(options), progress=progress.current())
        seq.timings["encode"] = time.perf_counter() - started
        cancelled = cancel.current()
        self.batcher.submit(seq)
        try:
            yield from self._text(seq, options, started, cancelled)
        finally:
            self.batcher.cancel(seq)  # a no-op once it ended

    def _text(
        self, seq: Sequence, options: GenerationOptions, started: float, cancelled: threading.Event | None = None
    ) -> Iterator[str | Generation]:
        """Detokenize ``seq``'s tokens into deltas (held back at a possible stop string), then the Generation."""
        stops = StopMatcher(options.stop)
        ids: list[int] = []
        first_token_at: float | None = None
        emitted, finish = "", "stop"
        for token in seq.tokens(cancelled):
            if first_token_at is None:
                first_token_at = time.perf_counter()
                seq.timings["first_token"] = first_token_at - seq.prefilled_at
            ids.append(token)
            progress.report(seq.progress, progress.GENERATE, len(ids), seq.max_new)
            done, visible = stops.visible(self.tokenizer.decode(ids, skip_special_tokens=True))
            if visible.startswith(emitted) and len(visible) > len(emitted):
                yield visible[len(emitted) :]
                emitted = visible
            if done:
                break
        else:
            finish = "length" if len(ids) >= seq.max_new else "stop"
        text = stops.final(self.tokenizer.decode(ids, skip_special_tokens=True))
        if text.startswith(emitted) and len(text) > len(emitted):
            yield text[len(emitted) :]
        assert seq.usage is not None  # set by the prefill, before any token
        usage = CacheUsage(
            input_tokens=seq.usage.input_tokens,
            cached_tokens=seq.usage.cached_tokens,
            cache_write_tokens=seq.usage.cache_write_tokens,
            output_tokens=len(ids),
            raw={**seq.usage.raw, "finish_reason": finish, "timings_s": dict(seq.timings)},
        )
        now = time.perf_counter()
        ttft = (first_token_at or now) - started
        yield Generation(text, usage, finish, ttft_s=ttft, latency_s=now - started, model=self.model_name)

    def warm(self, prompt: Prompt) -> CacheUsage:
        """Compute and store the KV of ``prompt``'s stable prefix (the system message), unless present."""
        if self.store is None:
            raise UnsupportedError("the local prefix cache is disabled (cache.enabled: false); nothing to warm")
        encoded = self.encoder.encode(prompt).stable_only()
        self._check_length(encoded.length)
        hook = progress.current()
        return self.batcher.background(self._warm_steps(encoded, hook))  # live requests go first (batcher.py)

    def _warm_steps(self, encoded: EncodedPrompt, hook: progress.Hook | None) -> Generator[None, None, CacheUsage]:
        """A warm-up's prefill, one forward of at most ``prefill_chunk`` tokens per step (background work:
        the batcher runs a step only while no request waits or runs). A live request that stored the
        prefix meanwhile ends it early. ``hook`` hears the prefill's progress (ragcache.progress)."""
        assert self.store is not None
        match = self.store.match(encoded.block_keys)
        if match.tokens >= encoded.length:
            return CacheUsage(input_tokens=encoded.length, cached_tokens=match.tokens)
        cache = self.past_cache(match.blocks, encoded.length - match.tokens)
        progress.report(hook, progress.PREFILL, match.tokens, encoded.length)
        for pieces in plan_prefill([(match.tokens, encoded.length)], self.prefill_chunk):
            ((_, start, end),) = pieces
            self._forward(encoded.ids[start:end], cache, start)
            progress.report(hook, progress.PREFILL, end, encoded.length)
            yield
            if encoded.blocks and encoded.blocks[-1].key in self.store:  # a request computed it meanwhile
                return CacheUsage(input_tokens=encoded.length, cached_tokens=encoded.length)
        written = self._store_blocks(encoded, cache, len(match.blocks))
        raw = {"matched_blocks": len(match.blocks), "prefix_key": match.key}
        return CacheUsage(encoded.length, match.tokens, cache_write_tokens=written, raw=raw)

    def queue_depth(self) -> int:
        """Requests waiting for a place in the decode batch (``ragcache_queue_depth``)."""
        return self.batcher.queue_depth()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def prefix_tokens(self, prompt: Prompt) -> int:
        """Tokens of the stable prefix exactly as :meth:`warm` caches them (the same encoding)."""
        return self.encoder.encode(prompt).stable_tokens

    def close(self) -> None:
        self.batcher.close()
        if self.graphs is not None:
            self.graphs.clear()
        if self.store is not None:
            self.store.clear()

    # --- helpers ----------------------------------------------------------------

    def _prefill_sequences(self, seqs: list[Sequence]) -> list[torch.Tensor | None]:
        """The batcher's prefill, of ``seqs`` together: each one's cache over its reused prefix, usage, last logits."""
        now = time.perf_counter()
        for seq in seqs:
            seq.timings["queue"] = now - seq.submitted_at
        prompts, reserve = [seq.encoded for seq in seqs], [seq.max_new for seq in seqs]
        hooks = [seq.progress for seq in seqs]
        timings = [seq.timings for seq in seqs]
        results = self._prefill(prompts, reserve=reserve, timings=timings, hooks=hooks, defer_store=True)
        now = time.perf_counter()
        for seq, (cache, _, usage, store) in zip(seqs, results, strict=True):
            seq.cache, seq.usage, seq.position, seq.prefilled_at = cache, usage, seq.encoded.length, now
            if store is not None:  # the batcher runs it once the first token is out (off its path)
                seq.settle = functools.partial(self._settle_store, seq, store)
        return [logits for _, logits, _, _ in results]

    def _settle_store(self, seq: Sequence, store: Callable[[], int]) -> None:
        """A sequence's deferred store: its new blocks into the store, the tokens written into its usage."""
        started = time.perf_counter()
        assert seq.usage is not None
        seq.usage = replace(seq.usage, cache_write_tokens=store())
        seq.timings["store"] = time.perf_counter() - started

    def _forward_graphs(self, options: LocalOptions, device: str) -> ForwardGraphs | None:
        """CUDA graphs of cached first forwards (graphs.py), where the device and the attention allow them."""
        from ragcache.backends.local.graphs import ForwardGraphs

        if options.cuda_graphs and not options.resolved_cuda_graphs(device):
            log.warning("backend.options.cuda_graphs: true needs a CUDA device, not %r; every forward runs eagerly",
                        device)  # fmt: skip
        if not (self._cascade and options.resolved_cuda_graphs(device)):
            return None
        return ForwardGraphs.for_model(self.model, self._num_layers, self.device)

    def _choose(self, logits: torch.Tensor, seq: Sequence) -> int:
        return choose(logits, seq.options, seq.generator)

    def _step(self, rows: list[Sequence]) -> torch.Tensor:
        """Feed each row its last token at its own position; logits ``[rows, vocab]``; caches advance."""
        import torch

        if self._cascade:
            logits = self._forward_rows([seq.cache for seq in rows], [[seq.last_token] for seq in rows],
                                        [seq.position for seq in rows])  # fmt: skip
        else:  # a model the shared-prefix attention does not serve: one forward per sequence
            logits = torch.stack([self._forward([seq.last_token], seq.cache, seq.position) for seq in rows])
        for seq in rows:
            seq.position += 1
        return logits

    def _check_length(self, length: int) -> None:
        window = self.capabilities.context_window
        if length >= window:
            raise ContextLengthError(
                f"the prompt has {length} tokens but model {self.model_name!r} has a {window}-token context window "
                "(room for at least one output token is needed); shorten the question, history or context"
            )

    def _prefill(
        self,
        prompts: list[EncodedPrompt],
        *,
        reserve: list[int] | None = None,
        timings: list[dict] | None = None,
        hooks: list[progress.Hook | None] | None = None,
        defer_store: bool = False,
    ) -> list[tuple[Any, torch.Tensor | None, CacheUsage, Callable[[], int] | None]]:
        """Per prompt: reuse the longest cached chain of blocks, compute the rest, store the new blocks.

        The prompts' own tokens are computed together (:meth:`_compute`). A new
        block two prompts need is computed once: the later prompt waits for a
        second pass, over the block then stored (identical requests arriving
        together cost one prefill, as they do one after the other). Returns
        (request cache, last logits, usage, deferred store) per prompt; None, None for a fully
        cached one. ``defer_store``: the new blocks are not stored here; each prompt's
        fourth item stores them and returns the tokens written (usage says 0 until then), for
        the batcher to run once the first token is out, so storing is off the first token's
        path; else it is None. A batch that needs a second pass (above) stores at once.
        ``timings`` (seconds, a dict per prompt) get the batch's ``match``, ``cache`` (the
        request caches over the matched blocks), ``forward`` (the host issuing it), ``store``
        (unless deferred: issuing the new blocks' copies, behind the forward on the device) and
        ``device`` (waiting for the device). ``hooks`` (one per prompt, or None) hear each prompt's
        prefill progress (ragcache.progress).
        """
        clock = _Phases(self.device, timings or [])
        matches = [self.store.match(p.block_keys) if self.store is not None else MatchResult() for p in prompts]
        clock.done("match")
        if self.store is not None and (later := _waiting_for_others(prompts, matches)):
            first = [i for i in range(len(prompts)) if i not in later]
            results = dict(zip(first, self._prefill_part(first, prompts, reserve, timings, hooks), strict=True))
            results.update(zip(later, self._prefill_part(later, prompts, reserve, timings, hooks), strict=True))
            return [results[i] for i in range(len(prompts))]
        caches = [  # None: a fully cached prompt (warm), nothing to compute
            self.past_cache(match.blocks, own + extra) if (own := prompt.length - match.tokens) > 0 else None
            for prompt, match, extra in zip(prompts, matches, reserve or [0] * len(prompts), strict=True)
        ]
        clock.done("cache")
        logits = self._compute(prompts, caches, [match.tokens for match in matches], hooks)
        clock.done("forward")  # issued, not waited for: the store's copies queue behind it on the device
        results = []
        for prompt, match, cache, last in zip(prompts, matches, caches, logits, strict=True):
            if cache is None:
                usage = CacheUsage(input_tokens=prompt.length, cached_tokens=match.tokens)
                results.append((None, None, usage, None))
                continue
            store = functools.partial(self._store_blocks, prompt, cache, len(match.blocks))
            usage = CacheUsage(
                input_tokens=prompt.length,
                cached_tokens=match.tokens,
                cache_write_tokens=0 if defer_store else store(),
                raw={"matched_blocks": len(match.blocks), "prefix_key": match.key},
            )
            results.append((cache, last, usage, store if defer_store else None))
        if not defer_store:
            clock.done("store")
        clock.done("device", sync=True)  # the device finishing both: the first token needs the logits anyway
        return results

    def _prefill_part(
        self,
        part: list[int],
        prompts: list[EncodedPrompt],
        reserve: list[int] | None,
        timings: list[dict] | None,
        hooks: list[progress.Hook | None] | None,
    ) -> list[tuple[Any, torch.Tensor | None, CacheUsage, Callable[[], int] | None]]:
        """:meth:`_prefill` of the prompts ``part`` indexes (stored at once: the next part reads them)."""
        return self._prefill(
            [prompts[i] for i in part],
            reserve=[reserve[i] for i in part] if reserve else None,
            timings=[timings[i] for i in part] if timings else None,
            hooks=[hooks[i] for i in part] if hooks else None,
        )

    def _compute(
        self,
        prompts: list[EncodedPrompt],
        caches: list[Any],
        starts: list[int],
        hooks: list[progress.Hook | None] | None = None,
    ) -> list[torch.Tensor | None]:
        """Prompt i's tokens from ``starts[i]`` on into ``caches[i]`` (skipped when None); its last logits.

        The prompts are cut into forwards of at most :attr:`prefill_chunk` tokens
        (:func:`~ragcache.backends.local.batcher.plan_prefill`), several prompts packed into one;
        ``hooks[i]`` hears prompt i's tokens done after each of its forwards.
        """
        todo = [i for i, cache in enumerate(caches) if cache is not None]
        hooks = hooks or [None] * len(prompts)
        for i in todo:
            progress.report(hooks[i], progress.PREFILL, starts[i], prompts[i].length)
        last: list[torch.Tensor | None] = [None] * len(prompts)
        for pieces in plan_prefill([(starts[i], prompts[i].length) for i in todo], self.prefill_chunk):
            rows = [todo[piece] for piece, _, _ in pieces]
            ids = [prompts[i].ids[start:end] for i, (_, start, end) in zip(rows, pieces, strict=True)]
            positions = [start for _, start, _ in pieces]
            if self._cascade:
                logits = list(self._forward_rows([caches[i] for i in rows], ids, positions))
            else:  # transformers' caches: one prompt per forward
                logits = [self._forward(*row) for row in zip(ids, (caches[i] for i in rows), positions, strict=True)]
            for i, (_, _, end), row in zip(rows, pieces, logits, strict=True):
                progress.report(hooks[i], progress.PREFILL, end, prompts[i].length)
                if end == prompts[i].length:
                    last[i] = row
        return last

    def past_cache(self, blocks: tuple[KVBlock, ...], reserve: int = 256) -> Any:
        """A new request cache over ``blocks`` (read in place) with room for ``reserve`` own tokens."""
        from ragcache.backends.local.request_cache import RequestCache, plain_cache

        if self._cascade:
            return RequestCache.create(blocks, self._num_layers, reserve, self.device, inline_tokens=self.inline_tokens)
        if blocks:
            raise ValueError("this model's cache layers cannot start from stored prefix blocks")
        return plain_cache(self.model.config)

    def _forward_rows(self, caches: list[Any], ids: list[list[int]], positions: list[int]) -> torch.Tensor:
        """One forward pass of several requests: row i feeds ``ids[i]`` at absolute ``positions[i]`` on.

        The rows are packed into one sequence (no padding); the shared-prefix
        attention keeps each to its request cache ``caches[i]``, which it extends.
        Logits of each row's last token, ``[rows, vocab]``. A request prefilled
        alone over a stored prefix replays a CUDA graph where :attr:`graphs`
        allows it (graphs.py); everything else runs eagerly.
        """
        import torch

        with self._forward_lock, torch.inference_mode():
            if self.graphs is not None and len(caches) == 1 and self.graphs.can_run(caches[0], len(ids[0])):
                eager = lambda: self._model_rows(caches, ids, positions)[0]  # noqa: E731  (if the capture fails)
                return self.graphs.run(caches[0], ids[0], eager)[None]
            return self._model_rows(caches, ids, positions)

    def _model_rows(self, caches: list[Any], ids: list[list[int]], positions: list[int]) -> torch.Tensor:
        """:meth:`_forward_rows` through the eager model (the caller holds the forward lock)."""
        import torch

        from ragcache.backends.local.attention import CascadeBatch

        lengths = [len(row) for row in ids]
        flat = [token for row in ids for token in row]
        where = [p + k for row, p in zip(ids, positions, strict=True) for k in range(len(row))]
        tokens = torch.tensor([flat], dtype=torch.long, device=self.device)
        positions_t = torch.tensor([where], dtype=torch.long, device=self.device)
        last = torch.tensor(list(itertools.accumulate(lengths)), device=self.device) - 1
        out = self.model(input_ids=tokens, position_ids=positions_t, use_cache=False, logits_to_keep=last,
                         ragcache_rows=CascadeBatch(caches, lengths))  # fmt: skip
        return out.logits[0].float()

    def _forward(self, ids: list[int], cache: Any, position: int) -> torch.Tensor:
        """Run ``ids`` at absolute ``position`` through the model; the last position's logits.

        ``cache`` is a request cache (the shared-prefix attention) or a transformers cache.
        """
        import torch

        from ragcache.backends.local.request_cache import RequestCache

        if isinstance(cache, RequestCache):
            return self._forward_rows([cache], [ids], [position])[0]
        with self._forward_lock, torch.inference_mode():
            tokens = torch.tensor([ids], dtype=torch.long, device=self.device)
            positions = torch.arange(position, position + len(ids), device=self.device).unsqueeze(0)
            out = self.model(input_ids=tokens, position_ids=positions, logits_to_keep=1, use_cache=True,
                             **{self._cache_arg: cache})  # fmt: skip
        return out.logits[0, -1].float()

    def _store_blocks(self, encoded: EncodedPrompt, cache: Any, matched: int) -> int:
        """Put the blocks the prompt computed (those after the matched chain) into the store; tokens written."""
        if self.store is None:
            return 0
        written = 0
        parent = encoded.blocks[matched - 1].key if matched else None
        for block in encoded.blocks[matched:]:
            layers = tuple(cache.own(i, block.start, block.end) for i in range(self._num_layers))
            result = self.store.put(KVBlock(block.key, parent, block.end - block.start, layers, block.stable))
            if result.stored:
                written += block.end - block.start
            elif not result.present:
                break  # not stored (over budget, …): its descendants would be orphans
            parent = block.key
        return written


def _waiting_for_others(prompts: list[EncodedPrompt], matches: list[MatchResult]) -> list[int]:
    """Prompts whose first block to compute an earlier prompt of the batch computes too (they wait for it)."""
    computed: set[str] = set()
    later = []
    for index, (prompt, match) in enumerate(zip(prompts, matches, strict=True)):
        new = prompt.block_keys[len(match.blocks) :]
        if new and new[0] in computed:
            later.append(index)
        else:
            computed.update(new)
    return later


def _cache_argument(model: Any) -> str:
    """The forward keyword of the KV cache: ``cache`` in current transformers, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def create(backend_config: BackendConfig, cache_config: CacheConfig) -> LocalBackend:
    """Registry factory (``backend.kind: local``)."""
    return LocalBackend(backend_config, cache_config)


class _Phases:
    """Seconds spent per phase of a prefill, into each of ``timings``; CUDA synchronized at ends."""

    def __init__(self, device: torch.device, timings: list[dict]) -> None:
        self.timings, self.cuda = timings, device.type == "cuda"
        self.last = time.perf_counter()

    def done(self, phase: str, *, sync: bool = False) -> None:
        if not self.timings:
            return
        if sync and self.cuda:  # the next step needs these results anyway: waiting here costs nothing
            import torch

            torch.cuda.synchronize()
        now = time.perf_counter()
        for timings in self.timings:
            timings[phase] = now - self.last
        self.last = now
