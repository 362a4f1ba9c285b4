"""``ragcache eval-chat`` through the real CLI on the four-topic corpus (tests/router_corpus.py).

The corpus is built into a temporary folder with the real all-MiniLM-L6-v2 index (its cache
kept there too); the questions are written beside it. A few seconds per command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from router_corpus import build_topics

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = [
    ("How deep should tomato seeds be sown?", "gardening/tomatoes.md"),
    ("How does compost help garden soil?", "gardening/soil.md"),
    ("When should roses be pruned?", "gardening/pruning.md"),
    ("What does a red giant become?", "astronomy/stars.md"),
    ("Which planet has the Great Red Spot?", "astronomy/planets.md"),
    ("What decides how faint a galaxy a telescope shows?", "astronomy/telescopes.md"),
    ("How long should bread dough be kneaded?", "cooking/bread.md"),
    ("What happens in the TCP three-way handshake?", "networking/tcp.md"),
    ("How does DNS resolve a host name?", "networking/dns.md"),
]
CONFIG = "backend: {max_output_tokens: 60}\nrouter: {history_allowance: 0, snippet_tokens: 64}\n"


def ragcache(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "ragcache.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "COLUMNS": "400"},  # error boxes on one line
    )
    assert (done.returncode == 0) == ok, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def topics(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("eval-chat")
    build = root / "build"
    build_topics(root, build)
    qa = root / "qa.jsonl"
    rows = [{"id": f"q{n}", "question": q, "gold_doc_ids": [d]} for n, (q, d) in enumerate(QUESTIONS)]
    qa.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = root / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    return build, qa, config


def test_eval_chat_json_table_and_plot(topics: tuple[Path, Path, Path], tmp_path: Path) -> None:
    build, qa, config = topics
    plot = tmp_path / "chat.png"
    args = ["eval-chat", "--corpus", str(build), "--qa", str(qa), "--config", str(config), "--windows", "1400,900"]
    args += ["--turns", "3", "--answer-tokens", "40"]
    report = json.loads(ragcache(*args, "--json", "--plot", str(plot)).stdout)
    assert report["turns"] == 3 and report["conversations"] == 6  # 3 topical (one per category with 2+), 3 shuffled
    assert [w["window"] for w in report["windows"]] == [900, 1400]
    keys = {"recall", "cached_share", "prompt_tokens_mean", "usd_per_1k_turns"}
    for row in report["windows"]:
        assert all(keys <= set(row[s]) for s in ("ragcache", "topk_in_system", "topk_after_history"))
        assert row["ragcache"]["recall"] > 0.5  # the topic blocks or excerpts hold most answers
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = ragcache(*args).stdout
    assert "top-k after history" in table and "ragcache" in table


def test_eval_chat_refuses_bad_input_with_clear_errors(topics: tuple[Path, Path, Path]) -> None:
    build, qa, config = topics
    missing = ragcache("eval-chat", "--corpus", str(build), "--config", str(config), ok=False)
    assert str(build / "qa.jsonl") in missing.stderr  # the default path, named; no fallback
    base = ["eval-chat", "--corpus", str(build), "--qa", str(qa), "--config", str(config)]
    assert "--windows" in ragcache(*base, "--windows", "8k", ok=False).stderr
    assert "--windows" in ragcache(*base, "--windows", "0,900", ok=False).stderr
    assert "--turns" in ragcache(*base, "--turns", "0", ok=False).stderr
    unknown = ragcache("eval-chat", "--corpus", str(build.parent / "nope"), "--qa", str(qa), ok=False)
    assert "nope" in unknown.stderr
