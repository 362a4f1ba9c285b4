"""Router evaluation on a real (small) build: figures, the same budget for top-k, clear QA-file errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from router_corpus import build_topics

from ragcache.backends.base import Capabilities
from ragcache.config import RouterConfig
from ragcache.errors import CorpusError
from ragcache.router.evaluate import evaluate_router, load_qa
from ragcache.router.policy import HybridRouter, context_budget

QA = [
    {"id": "a", "question": "How deep are tomato seeds sown?", "gold": ["gardening/tomatoes.md"]},
    {"id": "b", "question": "What is the TCP three-way handshake?", "gold": ["networking/tcp.md"]},
    {"id": "c", "question": "How is bread dough kneaded?", "gold": ["cooking/bread.md"]},
]


def write_qa(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_router_and_top_k_figures(tmp_path: Path) -> None:
    corpus = build_topics(tmp_path).corpus
    items = load_qa(write_qa(tmp_path / "qa.jsonl", QA), corpus)
    biggest = max(corpus.block(b).tokens for b in corpus.category_block_ids())
    config = RouterConfig(history_allowance=0, snippet_tokens=64)
    window = biggest - context_budget(corpus, config, Capabilities(context_window=0), 100)  # budget = biggest block
    router = HybridRouter(corpus, config, Capabilities(context_window=window), 100)
    report = evaluate_router(router, items).to_dict()
    assert report["router"]["evidence_recall"] == 1.0 and report["router"]["distinct_prefixes"] == 3
    assert [b["prompt_tokens_mean"] for b in report["baselines"]] == [report["router"]["prompt_tokens_mean"]] * 2
    assert report["baselines"][0]["distinct_prefixes"] == 3 and report["prefix_bound"] == 4


def test_qa_file_errors_name_the_place(tmp_path: Path) -> None:
    corpus = build_topics(tmp_path).corpus
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "gold": ["gardening/soil.md"]}\n{"question": "no gold"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: expected"):
        load_qa(bad)
    missing = write_qa(tmp_path / "missing.jsonl", [{"question": "q", "gold": ["nowhere.md"]}])
    with pytest.raises(CorpusError, match=r"gold documents not in corpus 'topics': nowhere\.md"):
        load_qa(missing, corpus)
