"""Time to first token, cold vs. served from the prefix cache, side by side in one run.

    ragcache bench ttft [--config F] [--corpus DIR] [--runs N] [--threads N]

Cold: the prefix store is emptied before each question, so the whole prompt
(instructions + corpus + question) is prefilled. Cached: the router's prefix is
warmed once, then each question only computes its own tokens. Each request
generates one token; TTFT is measured by the facade (routing included).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragcache.backends.base import GenerationOptions
from ragcache.errors import ConfigError

if TYPE_CHECKING:
    from ragcache.app import Answer
    from ragcache.config import Config

__all__ = ["QUESTIONS", "TARGET_RATIO", "TtftRun", "measure_ttft"]

QUESTIONS = (
    "What are the storage classes of SQLite?",
    "Why should AUTOINCREMENT usually be avoided?",
    "Can several processes write to the same database at once?",
    "Does SQLite need to be installed or configured?",
    "What happens when a string is stored in an INTEGER column?",
    "Is SQLite a client/server database?",
    "How large can a ROWID get?",
)
TARGET_RATIO = 10.0  # cold / cached median TTFT the local backend should reach


@dataclass(frozen=True)
class TtftRun:
    """The answers of both modes, and the torch threads they ran on."""

    corpus_dir: Path
    cold: list[Answer]
    cached: list[Answer]
    threads: int

    @property
    def ratio(self) -> float:
        """Cold median TTFT over cached median TTFT."""
        cached = statistics.median(a.ttft_s for a in self.cached)
        return statistics.median(a.ttft_s for a in self.cold) / cached if cached > 0 else float("inf")


def measure_ttft(cfg: Config, corpus_dir: Path, runs: int) -> TtftRun:
    """Ask ``runs`` questions cold and ``runs`` others after warming, on the local backend."""
    import torch

    from ragcache.app import RagCache
    from ragcache.corpus.store import default_build_dir

    build = default_build_dir(corpus_dir)
    cache = cfg.cache.model_copy(update={"persist": False})  # "cold" must not read an earlier run's KV files
    rag = RagCache.from_config(cfg.model_copy(update={"corpus": corpus_dir, "build_dir": build, "cache": cache}))
    store = getattr(rag.backend, "store", None)
    if store is None:
        rag.close()
        raise ConfigError("ragcache bench ttft needs the local backend with cache.enabled: true (see --config)")
    one = GenerationOptions(max_tokens=1)
    try:
        cold = []
        for question in QUESTIONS[:runs]:
            store.clear()
            cold.append(rag.ask(question, options=one))
        for prompt in rag.prefixes():
            rag.backend.warm(prompt)
        cached = [rag.ask(question, options=one) for question in QUESTIONS[-runs:]]
    finally:
        rag.close()
    return TtftRun(corpus_dir, cold, cached, torch.get_num_threads())
