"""`ragcache bench` on the REAL vLLM server of the test tier.

A tiny corpus (two short documents, one prefix of a few hundred tokens) keeps
cold prefills short on CPU. ``no-cache`` on vLLM defeats the prefix cache with a
fresh ``cache_salt`` per request, so it must report no cached tokens while
ragcache's warmed prefix is served from vLLM's cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vllm_harness import VllmServer

pytestmark = pytest.mark.vllm

PARAGRAPH = (
    "The {name} valve regulates pressure in the {place} loop. Operators check it every {n} hours, "
    "log the reading in the maintenance book, and replace the seal when the reading drifts by more "
    "than {n} percent from the baseline recorded at commissioning. "
)
QA = [
    {"question": "How often is the brass valve checked?", "gold_doc_ids": ["pumps/brass.md"]},
    {"question": "Where does the steel valve regulate pressure?", "gold_doc_ids": ["pipes/steel.md"]},
]


def write_corpus(root: Path) -> Path:
    corpus = root / "plant"
    for folder, name, place, n in (("pumps", "brass", "cooling", 6), ("pipes", "steel", "heating", 9)):
        doc = corpus / "docs" / folder / f"{name}.md"
        doc.parent.mkdir(parents=True)
        doc.write_text(f"# The {name} valve\n\n" + PARAGRAPH.format(name=name, place=place, n=n) * 4, encoding="utf-8")
    (corpus / "corpus.yaml").write_text(
        "name: plant\ntitle: Plant maintenance notes\nlicense: written for this test\n"
        "instructions: Answer from the documents below and cite them.\n",
        encoding="utf-8",
    )
    return corpus


def ragcache(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ragcache.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)


def test_bench_on_vllm_caches_ragcache_and_salts_no_cache(vllm_server: VllmServer, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path)
    done = ragcache("build", str(corpus), "--no-index", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    config = tmp_path / "bench.yaml"
    config.write_text(
        f"corpus: {corpus}\nbackend: {{kind: vllm, base_url: '{vllm_server.url}', model: smollm2}}\n"
        "cache: {warm_on_start: false, keep_warm: false}\n",
        encoding="utf-8",
    )
    workload = tmp_path / "w.jsonl"
    workload.write_text(
        "".join(
            json.dumps(
                {
                    "session": f"s{i}",
                    "turn": 0,
                    "question": row["question"],
                    "gold_doc_ids": row["gold_doc_ids"],
                    "arrival_s": 0.0,
                }
            )
            + "\n"
            for i, row in enumerate(QA)
        ),
        encoding="utf-8",
    )
    done = ragcache(
        "bench",
        "--config",
        str(config),
        "--workload",
        str(workload),
        "--out",
        "out",
        "--strategies",
        "ragcache,no-cache",
        "--max-tokens",
        "4",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    by = {s["strategy"]: s for s in results["summaries"]}
    # --warm-from first-half (the default): the first question only warms, the second is measured
    assert by["ragcache"]["requests"] == 1 and by["ragcache"]["errors"] == 0
    assert by["no-cache"]["errors"] == 0
    assert by["ragcache"]["cached_tokens"] > 0
    assert by["no-cache"]["cached_tokens"] == 0
    assert by["no-cache"]["prompt_tokens"] == by["ragcache"]["prompt_tokens"]
