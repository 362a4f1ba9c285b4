"""Cold vs cached prefix through the vllm, openai and anthropic backends on one server.

    python -m ragcache.bench.backend_cache --url http://127.0.0.1:8000 [--corpus corpora/small] [--repeats 3]

Each repeat uses a new stable prefix (instructions with a fresh first line + the
largest category block of the built corpus), asks a first question (cold) and a
second one on the same prefix (cached), and records time to first token and the
cached tokens the backend reported. Prints medians side by side, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

from ragcache.backends.base import Backend, Generation, GenerationOptions, create_backend
from ragcache.config import BackendConfig, CacheConfig
from ragcache.corpus.store import load_corpus
from ragcache.prompt import Prompt, Segment, SegmentKind

# Each wire format against the same server: its base-URL suffix and the options it needs there.
KINDS: dict[str, tuple[str, dict[str, int]]] = {
    "vllm": ("", {}),
    "openai": ("/v1", {}),
    "anthropic": ("", {"min_cacheable_tokens": 128, "cache_block_tokens": 128}),
}
OPTIONS = GenerationOptions(max_tokens=1)


def _backend(kind: str, url: str, model: str) -> Backend:
    suffix, options = KINDS[kind]
    config = BackendConfig(kind=kind, base_url=url + suffix, model=model, options=options)
    return create_backend(config, CacheConfig())


def _ttft(backend: Backend, prompt: Prompt) -> tuple[float, Generation]:
    started = time.perf_counter()
    first = None
    final = None
    for item in backend.stream(prompt, OPTIONS):
        if isinstance(item, Generation):
            final = item
        elif first is None:
            first = time.perf_counter()
    assert final is not None
    return (first or time.perf_counter()) - started, final


def measure(url: str, corpus_dir: str, repeats: int, model: str) -> list[dict[str, float | str]]:
    corpus = load_corpus(corpus_dir)
    block = max(corpus.category_block_ids(), key=lambda b: corpus.blocks[b].tokens)
    rows = []
    for kind in KINDS:
        backend = _backend(kind, url, model)
        cold, warm, cached, total = [], [], [], []
        for _ in range(repeats):
            stable = (
                Segment(SegmentKind.INSTRUCTIONS, f"[{uuid.uuid4().hex}]\n{corpus.block_text('instructions')}"),
                Segment(SegmentKind.CORPUS, corpus.block_text(block), block),
            )
            t_cold, _ = _ttft(backend, Prompt(stable=stable, question="What is this about?"))
            t_warm, generation = _ttft(backend, Prompt(stable=stable, question="Summarise it."))
            cold.append(t_cold)
            warm.append(t_warm)
            cached.append(generation.usage.cached_tokens)
            total.append(generation.usage.input_tokens)
        backend.close()
        c, w = statistics.median(cold), statistics.median(warm)
        row = {"backend": kind, "cold_ttft_s": c, "cached_ttft_s": w, "speedup": c / w if w else 0.0}
        rows.append({**row, "cached_tokens": statistics.median(cached), "prompt_tokens": statistics.median(total)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="vLLM server root")
    parser.add_argument("--corpus", default=str(Path("corpora") / "small"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="smollm2")
    args = parser.parse_args()
    rows = measure(args.url, args.corpus, args.repeats, args.model)
    print(f"{'backend':<10} {'cold TTFT s':>12} {'cached TTFT s':>14} {'ratio':>7} {'cached/prompt tokens':>22}")
    for r in rows:
        tokens = f"{r['cached_tokens']:.0f}/{r['prompt_tokens']:.0f}"
        times = f"{r['cold_ttft_s']:>12.3f} {r['cached_ttft_s']:>14.3f} {r['speedup']:>6.1f}x"
        print(f"{r['backend']:<10} {times} {tokens:>22}")


if __name__ == "__main__":
    main()
