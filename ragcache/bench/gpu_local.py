"""The ``local`` backend on CUDA in bf16 beside plain transformers (issue 13, section 2).

An 8B-shaped Llama with random weights (``from_config``, no weights on disk), the
8k and 32k derived corpora, the same prompts both ways: cold TTFT (empty store /
no past) and cached TTFT (the prefix's KV reused: ragcache's KV store, or a
``DynamicCache`` of the prefix cropped back after each question). The model is
put into the backend's per-process model table so the backend does not try to
read weights that do not exist.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from ragcache.app import RagCache
from ragcache.backends.base import GenerationOptions, create_backend
from ragcache.config import BackendConfig, CacheConfig, Config
from ragcache.corpus.store import load_corpus
from ragcache.router import create_router

__all__ = ["local_phase"]

ONE = GenerationOptions(max_tokens=1)


def _load_random(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    return model.eval(), AutoTokenizer.from_pretrained(model_dir)


def _rag(model_dir: Path, corpus: Path) -> RagCache:
    backend_config = BackendConfig(kind="local", model=str(model_dir), max_output_tokens=1,
                                   options={"device": "cuda", "dtype": "bfloat16"})  # fmt: skip
    config = Config(corpus=corpus, backend=backend_config, cache=CacheConfig(kv_budget_mb=40_000))
    compiled = load_corpus(corpus)
    backend = create_backend(config.backend, config.cache)
    return RagCache(config, compiled, backend, create_router(compiled, config.router, backend.capabilities, 1))


def _sync() -> None:
    import torch

    torch.cuda.synchronize()


def plain(model: Any, tokenizer: Any, rag: RagCache, qs: list[str]) -> dict[str, Any]:
    """Plain transformers on the same chat-rendered prompts: full prefill vs past_key_values reuse."""
    import torch
    from transformers import DynamicCache

    ids = [tokenizer.apply_chat_template(rag.prompt_for(q).messages(), add_generation_prompt=True) for q in qs]
    ids = [list(x["input_ids"]) if hasattr(x, "keys") else list(x) for x in ids]
    n = next(i for i, (a, b) in enumerate(zip(ids[0], ids[1], strict=False)) if a != b)  # shared prefix
    dev = torch.device("cuda")
    with torch.inference_mode():
        cold = []
        for seq in ids[:3]:
            t0 = time.perf_counter()
            model(torch.tensor([seq], device=dev), logits_to_keep=1).logits.argmax(-1).item()
            cold.append(time.perf_counter() - t0)
        past = DynamicCache()
        model(torch.tensor([ids[0][:n]], device=dev), past_key_values=past, use_cache=True, logits_to_keep=1)
        cached = []
        for seq in ids[1:]:
            t0 = time.perf_counter()
            out = model(torch.tensor([seq[n:]], device=dev), past_key_values=past, use_cache=True, logits_to_keep=1)
            out.logits.argmax(-1).item()
            cached.append(time.perf_counter() - t0)
            past.crop(n)
    return {"prefix_tokens": n, "cold_s": cold, "cached_s": cached,
            "cold_median_s": statistics.median(cold), "cached_median_s": statistics.median(cached)}  # fmt: skip


def through_ragcache(rag: RagCache, qs: list[str]) -> dict[str, Any]:
    """The local backend: cold with an empty KV store, then cached questions."""
    cold, cached, usage = [], [], []
    for q in qs[:3]:
        rag.backend.store.clear()
        _sync()
        cold.append(rag.ask(q, options=ONE).ttft_s)
    for q in qs[3:]:
        answer = rag.ask(q, options=ONE)
        cached.append(answer.ttft_s)
        usage.append({"input": answer.usage.input_tokens, "cached": answer.usage.cached_tokens})
    return {"cold_s": cold, "cached_s": cached, "usage": usage,
            "cold_median_s": statistics.median(cold), "cached_median_s": statistics.median(cached)}  # fmt: skip


def local_phase(model_dir: Path, corpora: Path) -> dict[str, Any]:
    """8k and 32k: the local backend and plain transformers, cold and cached, in one process."""
    import torch

    from ragcache.backends import local as local_module

    model, tokenizer = _load_random(model_dir)
    key = (str(model_dir.resolve()), "cuda", "bfloat16")
    local_module._MODELS[key] = (model, tokenizer)  # random weights: nothing on disk to load
    qs = [f"Question {i}: what does the documentation say about topic {i}?" for i in range(8)]
    out: dict[str, Any] = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name()}
    warmup = _rag(model_dir, corpora / "gpu-8k-b")
    warmup.ask("warm-up", options=ONE)
    for name in ("gpu-8k", "gpu-32k"):
        rag = _rag(model_dir, corpora / name)
        out[name] = {
            "ragcache_local": through_ragcache(rag, qs),
            "plain_transformers": plain(model, tokenizer, rag, qs),
        }
        rag.backend.store.clear()
    return out
