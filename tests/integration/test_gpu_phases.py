"""The GPU run's ``main`` phase (ragcache/bench/gpu_phases.py), dry, on the REAL vLLM CPU server.

The lead runs it on an H100 (`bash scripts/gpu-bench.sh main,keepwarm`); this runs the
same code on a corpus of a few hundred tokens and two questions, so a broken script
path is found here, not in device time. Only the served model name differs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcache.bench import gpu
from ragcache.bench.gpu_phases import main_phase
from ragcache.corpus.compile import build_corpus

pytestmark = pytest.mark.vllm

PARAGRAPH = (
    "The {name} valve regulates pressure in the {place} loop. Operators check it every {n} hours, "
    "log the reading in the maintenance book, and replace the seal when the reading drifts. "
)


def tiny_corpus(root: Path) -> Path:
    corpus = root / "tiny"
    for name, place, n in (("brass", "cooling", 6), ("steel", "heating", 9)):
        doc = corpus / "docs" / f"{name}.md"
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(f"# The {name} valve\n\n" + PARAGRAPH.format(name=name, place=place, n=n) * 3, encoding="utf-8")
    (corpus / "corpus.yaml").write_text(
        "name: tiny\ntitle: Valves\nlicense: written for this test\ninstructions: Answer from the documents.\n",
        encoding="utf-8",
    )
    build_corpus(corpus)
    return corpus


def test_the_main_phase_measures_token_id_requests(vllm_server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(gpu, "SERVED_NAME", "smollm2")
    tiny_corpus(tmp_path / "corpora")
    row = main_phase(vllm_server.url, tmp_path / "corpora", 2, ["tiny"])["tiny"]
    assert row["prompt_format"] == "token_ids"
    assert all(u["cached"] == 0 for u in row["cold"]["usage"])  # a fresh cache_salt each
    assert all(r["status"] == "cached" for r in row["warm"]["results"]), row["warm"]
    assert row["session"]["first_question"]["cached"] > 0  # after the warm-up
    assert row["session"]["reconciled"] == {"hits_minus_cached": 0, "queries_minus_prompt": 0}
    assert row["overhead"]["raw_median_s"] > 0 and row["overhead"]["ragcache_median_s"] > 0
    assert all(u["cached"] > 0 for u in row["chat"]["usage"])  # chat reads the KV token ids wrote
    assert row["cold_over_cached"] > 0 and row["chat_cold_over_cached"] > 0
