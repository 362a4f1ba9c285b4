"""The local engine's batched prefill and decode step against one row's, each CPU choice switched off in turn.

``python -m ragcache.bench.steps`` times, on the load test's sessions (a
system message with a session code over the default config's corpus), the
second turn of ``--rows`` sessions: their prefill together, then ``--steps``
decode steps of all rows; and one session alone, prefill and steps. Each
variant runs in a fresh process (the OpenMP state it measures is per process),
once per round, the variants taking turns, new sessions each round; the table
gives medians over ``--rounds`` and each variant's time over the engine's as it ships:

- ``engine``: as it ships;
- ``mkl``: float32 matmuls of several rows on MKL, not oneDNN (``linear.py``);
- ``in-place``: a request reads its private stored blocks in place instead of
  copying them into its own KV (``RequestCache.create``'s ``inline_tokens``);
- ``second-thread``: torch ops also run on the main thread before the batcher's
  (as a warm-up on the caller's thread did): two OpenMP teams.

These are the engine's costs without HTTP; ``python -m ragcache.bench.load``
measures the whole server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ragcache.backends.base import GenerationOptions
from ragcache.bench.load import QUESTIONS, make_sessions
from ragcache.bench.loadserver import ROOT
from ragcache.config import load_config
from ragcache.prompt import Message

__all__ = ["VARIANTS", "main", "measure"]

VARIANTS = ("engine", "mkl", "in-place", "second-thread")
ANSWER = "The session code is"  # a stand-in first answer: turn 2 then reads turn 1's stored blocks


def measure(variant: str, rows: int, steps: int, rounds: int, seed: int, build_dir: Path) -> dict[str, list[float]]:
    """Seconds per round of a ``rows``-row prefill, a ``rows``-row step, a 1-row prefill and a 1-row step
    (the default config over its corpus compiled in ``build_dir``)."""
    import torch

    from ragcache.app import RagCache
    from ragcache.backends.local import linear

    config = load_config(ROOT / "configs" / "default.yaml").model_copy(update={"build_dir": build_dir})
    config = config.model_copy(update={"cache": config.cache.model_copy(update={"persist": False})})  # in memory
    options = {**config.backend.options, "max_batch": max(rows, 1)}
    config = config.model_copy(update={"backend": config.backend.model_copy(update={"options": options})})
    rag = RagCache.from_config(config)
    backend = rag.backend
    if variant == "mkl":
        linear.onednn_usable = lambda: False  # type: ignore[assignment]
    if variant == "in-place":
        backend.inline_tokens = 0
    if variant == "second-thread":
        torch.randn(256, 256) @ torch.randn(256, 256)  # an OpenMP team on the main thread
    backend.warm(rag.prefixes()[0])

    def second_turns(count: int, round_seed: int) -> list[Any]:
        """Turn-2 prompts of ``count`` new sessions whose turn 1 is prefilled (its blocks stored)."""
        prompts = []
        for script in make_sessions(count, round_seed, twins=False):
            first = rag.prompt_for(QUESTIONS[0], context=script.system())
            backend.generate(first, GenerationOptions(max_tokens=1, temperature=0.0))
            history = (Message("user", QUESTIONS[0]), Message("assistant", f"{ANSWER} {script.code}."))
            prompts.append(backend.encoder.encode(rag.prompt_for(QUESTIONS[1], context=script.system(),
                                                                 history=history)))  # fmt: skip
        return prompts

    def run(prompts: list[Any]) -> tuple[float, float]:
        started = time.perf_counter()
        results = backend._prefill(prompts, reserve=[steps] * len(prompts))
        prefill = time.perf_counter() - started
        caches = [cache for cache, _, _, _ in results]
        tokens = [int(logits.argmax()) for _, logits, _, _ in results]
        positions = [p.length for p in prompts]
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            logits = backend._forward_rows(caches, [[t] for t in tokens], positions)
            times.append(time.perf_counter() - started)
            tokens, positions = logits.argmax(-1).tolist(), [p + 1 for p in positions]
        return prefill, statistics.median(times)

    out: dict[str, list[float]] = {"prefill_n": [], "step_n": [], "prefill_1": [], "step_1": []}
    for number in range(rounds):
        batch, alone = second_turns(rows, seed + 2 * number), second_turns(1, seed + 2 * number + 1)
        prefill_n, step_n = backend.batcher.call(lambda batch=batch: run(batch))  # the model's own thread
        prefill_1, step_1 = backend.batcher.call(lambda alone=alone: run(alone))
        for key, value in zip(out, (prefill_n, step_n, prefill_1, step_1), strict=True):
            out[key].append(value)
    backend.close()
    return out


def _table(results: dict[str, dict[str, list[float]]], rows: int) -> str:
    base = {key: statistics.median(values) for key, values in results["engine"].items()}
    head = (f"| variant | {rows}-row prefill | {rows}-row step | 1-row prefill | 1-row step |"
            f" {rows}-row step / 1-row step |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|"]
    for variant, values in results.items():
        med = {key: statistics.median(v) for key, v in values.items()}
        cells = [f"{med[k] * 1e3:.0f} ms" + ("" if variant == "engine" else f" ({med[k] / base[k]:.2f}x)")
                 for k in ("prefill_n", "step_n", "prefill_1", "step_1")]  # fmt: skip
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {med['step_n'] / med['step_1']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ragcache.bench.steps", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--json", help="write the medians and every round here")
    p.add_argument("--variant", help=argparse.SUPPRESS)  # internal: measure one variant in this process
    p.add_argument("--build-dir", type=Path, help=argparse.SUPPRESS)  # internal: the corpus the parent compiled
    args = p.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args.variant, args.rows, args.steps, args.rounds, args.seed, args.build_dir)))
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if unknown := [v for v in variants if v not in VARIANTS]:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if "engine" not in variants:
        variants.insert(0, "engine")
    with tempfile.TemporaryDirectory(prefix="ragcache-steps-") as tmp:
        from ragcache.corpus.compile import build_corpus

        build_dir = Path(tmp) / "build"
        build_corpus(load_config(ROOT / "configs" / "default.yaml").resolved_corpus(), build_dir)
        results = _rounds(variants, args, build_dir)
    if results is None:
        return 1
    print(_table(results, args.rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"settings": {k: str(v) for k, v in vars(args).items()}, "results": results}, handle, indent=2)
    return 0


def _rounds(variants: list[str], args: argparse.Namespace, build_dir: Path) -> dict[str, dict[str, list[float]]] | None:
    """Each variant once per round in a fresh process, the variants taking turns; None if one failed."""
    results: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    for number in range(args.rounds):  # round-robin over the variants: a slow spell of the machine hits them all
        for variant in variants:
            print(f"round {number + 1}/{args.rounds}: {variant} …", file=sys.stderr)
            sizes = ["--rows", str(args.rows), "--steps", str(args.steps), "--rounds", "1"]
            seed = ["--seed", str(args.seed + 100 * number)]
            where = ["--build-dir", str(build_dir)]
            command = [sys.executable, "-m", "ragcache.bench.steps", "--variant", variant, *sizes, *seed, *where]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return None
            for key, values in json.loads(done.stdout.strip().splitlines()[-1]).items():
                results[variant].setdefault(key, []).extend(values)
    return results


if __name__ == "__main__":
    sys.exit(main())
