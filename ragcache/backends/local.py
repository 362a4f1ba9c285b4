"""The embedded default: transformers + torch in this process, with a prefix KV store.

float32 on CPU (bf16 matmuls are ~5x slower on small CPUs), the GPU when one is
present. ``backend.options`` may set ``device``, ``dtype`` and ``threads`` (torch's
intra-op threads, process-wide; 1 is much faster when the cores are shared with
other busy processes). A prompt is rendered with the model's chat template and cut into
blocks at message boundaries (:mod:`ragcache.backends.local_prompt`); the KV of
those blocks goes into a :class:`~ragcache.cache.kvstore.KVStore`, so a second
question over the same corpus only computes its own tokens. The model and
tokenizer are loaded once per process and shared by every backend instance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragcache.backends.base import Backend, CacheUsage, Capabilities, Generation, GenerationOptions
from ragcache.backends.local_prompt import EncodedPrompt, PromptEncoder, StopMatcher, model_fingerprint
from ragcache.cache.kvstore import KVBlock, KVStore, MatchResult
from ragcache.errors import ContextLengthError, ModelError, UnsupportedError
from ragcache.prompt import Prompt

if TYPE_CHECKING:
    import torch

    from ragcache.config import BackendConfig, CacheConfig

__all__ = ["LocalBackend", "create", "load_model"]

PREFILL_CHUNK = 1024  # bounds the attention matrix of a long prefill
_MODELS: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()


def load_model(path: Path, device: str, dtype: str) -> tuple[Any, Any]:
    """(model, tokenizer) for a local Hugging Face folder, loaded once per process."""
    key = (str(path.resolve()), device, dtype)
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer
                from transformers.utils import logging as hf_logging
            except ImportError as exc:
                raise ModelError("the local backend needs the 'local' extra: pip install 'ragcache[local]'") from exc
            hf_logging.disable_progress_bar()
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
            except Exception as exc:
                raise ModelError(f"cannot load the model in {path}: {exc}") from exc
            model.eval()
            _MODELS[key] = (model, tokenizer)
        return _MODELS[key]


class LocalBackend(Backend):
    """In-process generation with block-aligned prefix reuse (see the module docstring)."""

    name = "local"

    def __init__(self, config: BackendConfig, cache: CacheConfig) -> None:
        import torch

        from ragcache.models import resolve_model_path

        self.config = config
        self.cache_config = cache
        path = resolve_model_path(config.model)
        if config.options.get("threads"):
            torch.set_num_threads(int(config.options["threads"]))  # process-wide: torch has one intra-op pool
        device = str(config.options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = str(config.options.get("dtype") or ("float32" if device == "cpu" else "bfloat16"))
        self.model, self.tokenizer = load_model(path, device, dtype)
        self.device = torch.device(device)
        self.model_name = config.model or path.name
        window = config.context_window or int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._capabilities = Capabilities(
            context_window=window, min_cacheable_tokens=1, ttl_s=cache.ttl_s, can_warm=cache.enabled
        )
        self.encoder = PromptEncoder(self.tokenizer, model_fingerprint(path, dtype))
        self.store: KVStore | None = None
        if cache.enabled:
            self.store = KVStore(cache.kv_budget_mb * 1024 * 1024, ttl_s=cache.ttl_s, persist_dir=cache.persist_dir)
        self._eos = _eos_ids(self.model, self.tokenizer)
        self._forward_lock = threading.Lock()  # one forward at a time: two would just fight for the cores

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
        """Prefill (reusing the longest cached prefix), then decode token by token, yielding text deltas."""
        started = time.perf_counter()
        encoded = self.encoder.encode(prompt)
        self._check_length(encoded.length)
        max_new = min(options.max_tokens, self.capabilities.context_window - encoded.length)
        cache, logits, usage = self._prefill(encoded, reserve=max_new)
        stops = StopMatcher(options.stop)
        ids: list[int] = []
        first_token_at: float | None = None
        emitted, finish = "", "stop"
        for token in self._tokens(logits, cache, encoded.length, max_new, options):
            first_token_at = first_token_at or time.perf_counter()
            ids.append(token)
            done, visible = stops.visible(self.tokenizer.decode(ids, skip_special_tokens=True))
            if visible.startswith(emitted) and len(visible) > len(emitted):
                yield visible[len(emitted) :]
                emitted = visible
            if done:
                break
        else:
            finish = "length" if len(ids) >= max_new else "stop"
        text = stops.final(self.tokenizer.decode(ids, skip_special_tokens=True))
        if text.startswith(emitted) and len(text) > len(emitted):
            yield text[len(emitted) :]
        usage = CacheUsage(
            input_tokens=usage.input_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=len(ids),
            raw={**usage.raw, "finish_reason": finish},
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
        _, _, usage = self._prefill(encoded, compute_logits=False)
        return usage

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def close(self) -> None:
        if self.store is not None:
            self.store.clear()

    # --- helpers ----------------------------------------------------------------

    def _tokens(
        self, logits: torch.Tensor, cache: Any, position: int, max_new: int, options: GenerationOptions
    ) -> Iterator[int]:
        """Decode token ids from the prompt's last logits until EOS (not yielded) or ``max_new``."""
        generator = _sampler(options)
        for n in range(max_new):
            token = _choose(logits, options, generator)
            if token in self._eos:
                return
            yield token
            if n + 1 < max_new:
                logits = self._forward([token], cache, position + n)

    def _check_length(self, length: int) -> None:
        window = self.capabilities.context_window
        if length >= window:
            raise ContextLengthError(
                f"the prompt has {length} tokens but model {self.model_name!r} has a {window}-token context window "
                "(room for at least one output token is needed); shorten the question, history or context"
            )

    def _prefill(
        self, encoded: EncodedPrompt, *, reserve: int = 0, compute_logits: bool = True
    ) -> tuple[Any, torch.Tensor | None, CacheUsage]:
        """Reuse the longest cached chain of blocks, compute the rest, store the new blocks."""
        match = self.store.match(encoded.block_keys) if self.store is not None else MatchResult()
        start = match.tokens
        if start >= encoded.length:  # a fully cached prompt (warm): nothing to compute
            return None, None, CacheUsage(input_tokens=encoded.length, cached_tokens=start)
        cache = self.past_cache(match.blocks, encoded.length - start + reserve)
        logits = None
        for offset in range(start, encoded.length, PREFILL_CHUNK):
            chunk = encoded.ids[offset : offset + PREFILL_CHUNK]
            logits = self._forward(chunk, cache, offset)
        written = self._store_blocks(encoded, cache, len(match.blocks))
        usage = CacheUsage(
            input_tokens=encoded.length,
            cached_tokens=start,
            cache_write_tokens=written,
            raw={"matched_blocks": len(match.blocks), "prefix_key": match.key},
        )
        return cache, (logits if compute_logits else None), usage

    def past_cache(self, blocks: tuple[KVBlock, ...], reserve: int = 256) -> Any:
        """A new request cache over a private copy of ``blocks`` (the forward pass grows it, not them)."""
        from ragcache.backends.local_cache import request_cache

        return request_cache(self.model.config, blocks, reserve, self.device)

    def _forward(self, ids: list[int], cache: Any, position: int) -> torch.Tensor:
        """Run ``ids`` at absolute ``position`` through the model; the last position's logits."""
        import torch

        with self._forward_lock, torch.inference_mode():
            tokens = torch.tensor([ids], dtype=torch.long, device=self.device)
            positions = torch.arange(position, position + len(ids), device=self.device)
            out = self.model(
                input_ids=tokens, past_key_values=cache, use_cache=True, cache_position=positions, logits_to_keep=1
            )
        return out.logits[0, -1].float()

    def _store_blocks(self, encoded: EncodedPrompt, cache: Any, matched: int) -> int:
        """Put the blocks the prompt computed (those after the matched chain) into the store."""
        if self.store is None:
            return 0
        written = 0
        parent = encoded.blocks[matched - 1].key if matched else None
        for block in encoded.blocks[matched:]:
            layers = tuple(
                (layer.keys[..., block.start : block.end, :], layer.values[..., block.start : block.end, :])
                for layer in cache.layers
            )
            kv = KVBlock(block.key, parent, block.end - block.start, layers, persist=block.stable)
            if self.store.put(kv):
                written += kv.tokens
            elif block.key not in self.store:
                break  # too large for the budget: later blocks would be orphans
            parent = block.key
        return written


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end, int) and end != tokenizer.unk_token_id:
        ids.add(end)
    return frozenset(ids)


def _sampler(options: GenerationOptions) -> torch.Generator | None:
    import torch

    if options.temperature <= 0:
        return None
    generator = torch.Generator()
    if options.seed is not None:
        generator.manual_seed(options.seed)
    else:
        generator.seed()
    return generator


def _choose(logits: torch.Tensor, options: GenerationOptions, generator: torch.Generator | None) -> int:
    """Greedy at temperature 0, else temperature + nucleus (top-p) sampling."""
    import torch

    if generator is None:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.cpu() / options.temperature, dim=-1)
    if options.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < options.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def create(backend_config: BackendConfig, cache_config: CacheConfig) -> LocalBackend:
    """Registry factory (``backend.kind: local``)."""
    return LocalBackend(backend_config, cache_config)
