"""Issue 27 item 3: a warm-up never holds a live request back (local backend, corpora/sqlite).

The warm-up's prefill is background work in the batcher, one forward (``prefill_chunk``
tokens) per step, run only while no request waits or runs; a request arriving during a
long warm-up waits for at most the step in progress. Before, the whole prefix was one
job and a request waited for all of it (over 300 s behind the warm-up of corpora/sqlite).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragcache.backends.base import GenerationOptions

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How do I create an index on two columns?"


@pytest.fixture(scope="module")
def sqlite_rag(local_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """corpora/sqlite compiled (no router index) and served by the local backend with its prefix cache."""
    from ragcache.app import RagCache
    from ragcache.config import Config
    from ragcache.corpus.compile import build_corpus

    out = tmp_path_factory.mktemp("sqlite") / "build"
    build_corpus(ROOT / "corpora" / "sqlite", out)
    rag = RagCache.from_config(Config(corpus=out, build_dir=out))
    try:
        yield rag
    finally:
        rag.close()


def test_a_live_request_during_a_warm_up_waits_for_one_step_at_most(sqlite_rag: Any) -> None:
    """The warm-up of the largest prefix (~2.6k tokens, in 256-token steps: 10+), then a request over the
    smallest prefix arrives in its second step: queued for at most the step in progress, TTFT about its
    own cold TTFT plus one step."""
    from ragcache.prompt import assemble_prompt

    rag, backend = sqlite_rag, sqlite_rag.backend
    backend.prefill_chunk = 256  # more, shorter steps: the bound is one of them (set per backend, like the bench)
    sized = sorted(((backend.prefix_tokens(p), p) for p in rag.prefixes()), key=lambda pair: pair[0])
    (small_tokens, small), (tokens, prefix) = sized[0], sized[-1]
    steps = math.ceil(tokens / backend.prefill_chunk)
    assert steps >= 8, sized[-1][0]
    live_prompt = assemble_prompt(rag.stable_segments(small.route.block_ids), QUESTION, route=small.route)
    options = GenerationOptions(max_tokens=1)

    started = time.perf_counter()
    backend.warm(prefix)  # alone: what one warm-up step costs here
    step_s = (time.perf_counter() - started) / steps
    backend.store.clear()
    cold = backend.generate(live_prompt, options)  # the request alone, nothing cached: its own cold TTFT
    backend.store.clear()

    warm_up = threading.Thread(target=backend.warm, args=(prefix,))
    warm_up.start()
    time.sleep(1.5 * step_s)  # the warm-up is in its second step, with 6+ to go
    live = backend.generate(live_prompt, options)
    warm_up.join(timeout=600)
    queue_s = live.usage.raw["timings_s"]["queue"]
    print(f"warm-up: {tokens} tokens in {steps} steps of {step_s:.2f} s; the request ({small_tokens}-token prefix): "
          f"cold TTFT {cold.ttft_s:.2f} s, during the warm-up {live.ttft_s:.2f} s "
          f"(queued {queue_s:.2f} s)")  # fmt: skip
    assert live.text == cold.text and not warm_up.is_alive()
    assert queue_s <= 1.5 * step_s, "the request waited for more than the warm-up step in progress"
    # The bound is cold TTFT + one step; the shared 2-core test machine's speed drifts by half
    # between runs minutes apart (docs/reliability.md), hence the factor. Before: ~9 steps of waiting.
    assert live.ttft_s <= 1.5 * (cold.ttft_s + step_s) + 1.0
    assert backend.store.match([b.key for b in backend.encoder.encode(prefix).stable_only().blocks]).tokens == tokens
