"""The ``local`` backend on CUDA in bf16 beside plain transformers (issue 13, section 2).

An 8B-shaped Llama with random weights (``from_config``, no weights on disk), the
8k and 32k derived corpora, the same prompts both ways: cold TTFT (empty store /
no past) and cached TTFT (the prefix's KV reused: ragcache's KV store, or a
``DynamicCache`` of the prefix cropped back after each question). The model is
put into the backend's per-process model table so the backend does not try to
read weights that do not exist.

Each local cached TTFT is broken down by phase (the engine's
``usage.raw["timings_s"]``, host time; CUDA synchronized where a phase waits
for the device): prompt encoding (chat template, tokenizing, block keys), queue
(waiting for the batcher thread), store match, request cache (references to the
matched blocks), forward (issuing the prefill of the request's own tokens), device
(waiting for the device to finish it) and first token (choosing it and handing it
to the caller); what is left of the TTFT is ``other``. ``store`` (its new blocks
into the store) runs once the first token is out and is reported beside the TTFT,
not in it. The cached questions run twice: with the
engine's CUDA graphs (``backend.options.cuda_graphs``, on by default on CUDA:
``ragcache_local``) and without (``ragcache_local_eager``), in the same
process; ``graphs`` says how many forwards were captured and replayed.
``--device cpu`` with a tiny model folder is a smoke test of this script, not a
measurement.

    python -m ragcache.bench.gpu_local --root ROOT --out FILE   # ROOT: what `ragcache.bench.gpu prepare` wrote
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
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
COLD = 7  # cold prompts a side; the first (one-time setup in the process) is left out of the median


PHASES = ("encode", "queue", "match", "cache", "forward", "device", "first_token")  # the TTFT's; "store" comes after


def _load_random(model_dir: Path, device: str, dtype: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype), attn_implementation="sdpa")
    return model.eval(), AutoTokenizer.from_pretrained(model_dir)


def _rag(model_dir: Path, corpus: Path, device: str, dtype: str, *, graphs: bool | None = None) -> RagCache:
    options = {"device": device, "dtype": dtype, "cuda_graphs": graphs}
    backend_config = BackendConfig(kind="local", model=str(model_dir), max_output_tokens=1, options=options)
    config = Config(corpus=corpus, backend=backend_config, cache=CacheConfig(kv_budget_mb=40_000, persist=False))
    compiled = load_corpus(corpus)
    backend = create_backend(config.backend, config.cache)
    return RagCache(config, compiled, backend, create_router(compiled, config.router, backend.capabilities, 1))


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _cold_median(cold: list[float]) -> float:
    """The median cold TTFT without the first sample: a side's first request in the process pays one-time setup."""
    return statistics.median(cold[1:] or cold)


def plain(model: Any, tokenizer: Any, rag: RagCache, qs: list[str], cold_qs: list[str]) -> dict[str, Any]:
    """Plain transformers on the same chat-rendered prompts: full prefill (``cold_qs``) vs past_key_values reuse."""
    import torch
    from transformers import DynamicCache

    def encode(questions: list[str]) -> list[list[int]]:
        rendered = (rag.prompt_for(q).messages() for q in questions)
        ids = [tokenizer.apply_chat_template(messages, add_generation_prompt=True) for messages in rendered]
        return [list(x["input_ids"]) if hasattr(x, "keys") else list(x) for x in ids]

    ids = encode(qs)
    n = next(i for i, (a, b) in enumerate(zip(ids[0], ids[1], strict=False)) if a != b)  # shared prefix
    dev = rag.backend.device
    with torch.inference_mode():
        cold = []
        for seq in encode(cold_qs):
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
            past.crop(n - past.get_seq_length())  # negative: drop the question (both transformers 5.17 and 5.24)
        profile = None
        if dev.type == "cuda":  # one cached forward under the profiler: its kernel launches beside the engine's
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as profiler

            with profiler(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                model(torch.tensor([ids[1][n:]], device=dev), past_key_values=past, use_cache=True, logits_to_keep=1)
                _sync()
            past.crop(n - past.get_seq_length())
            profile = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return {"prefix_tokens": n, "cold_s": cold, "cached_s": cached, "profile_cached_by_self_cpu_time": profile,
            "cold_median_s": _cold_median(cold), "cached_median_s": statistics.median(cached)}  # fmt: skip


def through_ragcache(rag: RagCache, qs: list[str], cold_qs: list[str]) -> dict[str, Any]:
    """The local backend: ``cold_qs`` each with an empty KV store, then ``qs[3:]`` cached, each TTFT by phase."""
    cold, cached, usage, cold_phases, cached_phases = [], [], [], [], []
    for q in cold_qs:
        rag.backend.store.clear()
        _sync()
        answer = rag.ask(q, options=ONE)
        cold.append(answer.ttft_s)
        cold_phases.append(_phases(answer))
    for q in qs[3:]:  # the same questions whatever the number of cold ones
        answer = rag.ask(q, options=ONE)
        cached.append(answer.ttft_s)
        cached_phases.append(_phases(answer))
        usage.append({"input": answer.usage.input_tokens, "cached": answer.usage.cached_tokens})
    graphs = rag.backend.graphs
    return {"cold_s": cold, "cached_s": cached, "usage": usage,
            "graphs": None if graphs is None else
            {"runs": graphs.runs, "captures": graphs.captures, "replays": graphs.replays, "failed": graphs.failed},
            "cold_median_s": _cold_median(cold), "cached_median_s": statistics.median(cached),
            "cold_phases_median_ms": _median_phases(cold_phases[1:] or cold_phases),
            "cached_phases_median_ms": _median_phases(cached_phases[1:] or cached_phases),  # the first: warm-up
            "cached_phases_ms": cached_phases}  # fmt: skip


def _phases(answer: Any) -> dict[str, float]:
    """One answer's TTFT by engine phase, in ms; ``other``: the TTFT not in any phase."""
    timings = answer.usage.raw.get("timings_s", {})
    phases = {name: round(timings.get(name, 0.0) * 1000, 3) for name in PHASES}
    phases["other"] = round(answer.ttft_s * 1000 - sum(phases.values()), 3)
    phases["ttft"] = round(answer.ttft_s * 1000, 3)
    phases["store"] = round(timings.get("store", 0.0) * 1000, 3)  # after the first token, outside the TTFT
    return phases


def _median_phases(samples: list[dict[str, float]]) -> dict[str, float]:
    return {name: round(statistics.median(s[name] for s in samples), 3) for name in samples[0]} if samples else {}


def local_phase(
    model_dir: Path,
    corpora: Path,
    *,
    device: str = "cuda",
    dtype: str = "bfloat16",
    names: tuple[str, ...] = ("gpu-8k", "gpu-32k"),
    warmup: str = "gpu-8k-b",
    progress: Any = None,
) -> dict[str, Any]:
    """8k and 32k: the local backend and plain transformers, cold and cached, in one process.

    ``progress`` (optional) is called with the results so far after each corpus (a partial JSON survives a cut run).
    """
    import torch
    import transformers

    from ragcache.backends.local import model as local_module
    from ragcache.backends.local.attention import uses_flash

    model, tokenizer = _load_random(model_dir, device, dtype)
    key = (str(model_dir.resolve()), device, dtype)
    local_module._MODELS[key] = (model, tokenizer)  # random weights: nothing on disk to load
    qs = [f"Question {i}: what does the documentation say about topic {i}?" for i in range(12)]
    cold_qs = [f"Cold question {i}: what does the documentation say about subject {i}?" for i in range(COLD)]
    head_dim = getattr(model.config, "head_dim", None) or model.config.hidden_size // model.config.num_attention_heads
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "flash_for_stored_prefix": uses_flash(device, getattr(torch, dtype), head_dim),
    }
    first = _rag(model_dir, corpora / warmup, device, dtype)
    first.ask("warm-up", options=ONE)
    first.backend.close()
    for name in names:
        rag = _rag(model_dir, corpora / name, device, dtype)
        out[name] = {
            "prefill_chunk": rag.backend.prefill_chunk,
            "ragcache_local": through_ragcache(rag, qs, cold_qs),
            "plain_transformers": plain(model, tokenizer, rag, qs, cold_qs),
            "reused_vs_recomputed": logits_check(rag, model, qs[0]),
        }
        if device.startswith("cuda"):
            out[name]["profile_cached"] = profile_cached(rag, qs[-1])
        rag.backend.close()
        eager = _rag(model_dir, corpora / name, device, dtype, graphs=False)  # the same questions, no graphs
        out[name]["ragcache_local_eager"] = through_ragcache(eager, qs, cold_qs[:1])
        eager.backend.close()
        if progress is not None:
            progress(out)
    return out


def profile_cached(rag: RagCache, question: str) -> dict[str, str]:
    """One cached answer under torch's profiler: where a cached TTFT goes (kernels vs the host launching them)."""
    from torch.profiler import ProfilerActivity, profile

    # Two questions not asked before (an asked one matches its own stored block too): the first warms the
    # allocator and captures the graph of its bucket, the second is profiled.
    rag.ask(f"{question} (first)", options=ONE)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        rag.ask(f"{question} (second)", options=ONE)
        _sync()
    table = prof.key_averages()
    return {
        "by_cuda_time": table.table(sort_by="cuda_time_total", row_limit=20),
        "by_self_cpu_time": table.table(sort_by="self_cpu_time_total", row_limit=25),
    }


def logits_check(rag: RagCache, model: Any, question: str) -> dict[str, Any]:
    """The last position's logits: the stored prefix reused by the engine vs one plain forward of the whole prompt."""
    import torch
    from transformers import DynamicCache

    backend = rag.backend
    encoded = backend.encoder.encode(rag.prompt_for(question))
    backend.warm(rag.prompt_for(question))  # the stable prefix into the store
    match = backend.store.match(encoded.block_keys)
    start = match.tokens
    reused = backend._forward(encoded.ids[start:], backend.past_cache(match.blocks, 8), start)
    with torch.inference_mode():
        ids = torch.tensor([encoded.ids], device=backend.device)
        full = model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1).logits[0, -1]
    full = full.float()
    return {"prompt_tokens": encoded.length, "reused_tokens": start,
            "max_abs_diff": (reused - full).abs().max().item(), "max_abs_logit": full.abs().max().item(),
            "same_argmax": int(reused.argmax()) == int(full.argmax())}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the local phase alone (no vLLM needed) and write its JSON."""
    import torch
    import transformers

    parser = argparse.ArgumentParser(prog="python -m ragcache.bench.gpu_local", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="what `python -m ragcache.bench.gpu prepare` wrote")
    parser.add_argument("--out", required=True, type=Path, help="the JSON result file (rewritten after each corpus)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--corpora", default="gpu-8k,gpu-32k")
    args = parser.parse_args(argv)
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__}
    result: dict[str, Any] = {"environment": env, "argv": sys.argv, "phases": {}}

    def save(local: dict[str, Any]) -> None:
        result["phases"]["local"] = local
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    save(local_phase(args.root / "model", args.root / "corpora", device=args.device, dtype=args.dtype,
                     names=tuple(args.corpora.split(",")), progress=save))  # fmt: skip
    for name in args.corpora.split(","):
        local = result["phases"]["local"][name]
        mine, eager, plain_ = local["ragcache_local"], local["ragcache_local_eager"], local["plain_transformers"]
        print(f"{name}: cached {mine['cached_median_s'] * 1000:.1f} ms (eager {eager['cached_median_s'] * 1000:.1f},"
              f" plain {plain_['cached_median_s'] * 1000:.1f}); cold {mine['cold_median_s']:.3f} s"
              f" (plain {plain_['cold_median_s']:.3f}); same argmax {local['reused_vs_recomputed']['same_argmax']};"
              f" graphs {mine['graphs']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
