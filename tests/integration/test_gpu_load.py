"""The GPU run's load phase (ragcache/bench/gpu_load.py, chatload.py), small, on the REAL vLLM CPU server.

Two chats of two turns over two tiny corpora through a real ragcache worker (uvicorn, the
``vllm`` backend, token-id prompts) and then the same requests straight to vLLM: the client,
the raw bodies and the report run here, so device time is not spent finding a broken path.
The CPU server has no dev mode, so its prefix cache is not reset between the two sides
(the report says so: the reset's status is not 200).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vllm_harness import free_port

from ragcache.bench.gpu_load import load_phase, open_rags, start_worker
from ragcache.corpus.compile import build_corpus

pytestmark = pytest.mark.vllm

PARAGRAPH = "The {name} valve regulates pressure in the {place} loop; operators check it every {n} hours. "


def tiny_corpora(root: Path) -> list[str]:
    names = []
    for name, place, n in (("brass", "cooling", 6), ("steel", "heating", 9)):
        corpus = root / name
        (corpus / "docs").mkdir(parents=True)
        (corpus / "docs" / f"{name}.md").write_text(f"# The {name} valve\n\n" + PARAGRAPH.format(
            name=name, place=place, n=n) * 4, encoding="utf-8")  # fmt: skip
        (corpus / "corpus.yaml").write_text(
            f"name: {name}\ntitle: Valves\nlicense: written for this test\ninstructions: Answer from the documents.\n",
            encoding="utf-8",
        )
        build_corpus(corpus)
        names.append(name)
    return names


def test_the_load_phase_compares_ragcache_with_the_same_requests_raw(vllm_server, tmp_path: Path) -> None:
    names = tiny_corpora(tmp_path / "corpora")
    worker = start_worker(vllm_server.url, tmp_path / "corpora", names, free_port(), tmp_path, max_tokens=2,
                          model="smollm2")  # fmt: skip
    rags = open_rags(vllm_server.url, tmp_path / "corpora", names, 2, model="smollm2")
    try:
        worker.wait_ready("/readyz", timeout_s=300)
        out = load_phase([vllm_server.url], [worker], rags, sessions=2, turns=2, max_tokens=2)
    finally:
        worker.stop()
        for rag in rags.values():
            rag.close()
    for side in ("ragcache", "raw"):
        assert out[side]["requests"] == 4 and out[side]["errors"] == 0, out[side]["error_samples"]
        assert out[side]["throughput_rps"] > 0 and out[side]["ttft_p50_ms"] > 0
        assert set(out[side]["cached_share_by_turn"]) == {"1", "2"}
    assert out["ragcache"]["cached_share_from_turn2"] > 0.5  # the history of turn 1 was read from the cache
    assert out["same_prompts"] == {"turns": 4, "equal_prompt_tokens": 4}  # raw sent ragcache's very requests
    assert {r["corpus"] for r in out["turns_ragcache"]} == set(names)  # sessions took both routes
    assert out["ragcache"]["worker_cpu_s"][0] > 0
    assert set(out["compare"]["met"]) == {"throughput", "ttft_p50_overhead", "errors", "cached_share_from_turn2"}
    assert out["compare"]["met"]["errors"] is True
    assert all(code != 200 for code in out["reset_before_raw"].values())  # no dev mode on the CPU server


def test_an_offload_run_of_one_round_is_refused_before_any_server_starts(capsys: pytest.CaptureFixture[str]) -> None:
    """Round 0 only follows the warm-up, so one round would measure nothing (and divide by zero)."""
    from ragcache.bench.gpu_load import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--root", "unused", "--out", "unused", "--offload-rounds", "1"])
    assert exit_info.value.code == 2 and "--offload-rounds must be at least 2" in capsys.readouterr().err
