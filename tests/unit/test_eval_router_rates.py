"""``eval-router --rates``: several arrival rates in one run, on the small topic corpus.

The per-rate figures must be exactly those of a one-rate run (the rate is a new
dimension, not a new computation); the real CLI is run once on a real build with
two rates to check the JSON and the plot, and its option errors are checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from router_corpus import build_topics
from typer.testing import CliRunner

from ragcache.cache.replay import CacheRules
from ragcache.cli import app
from ragcache.cli.router import parse_rates
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.prompt import Route
from ragcache.router.embeddings import load_embedder
from ragcache.router.eval_plot import short_window
from ragcache.router.evaluate import QAItem, TopK, evaluate_rates, evaluate_windows
from ragcache.router.index import open_index

RULES = CacheRules("test", "anthropic", input=10.0, cached_read=1.0, cache_write=12.5, ttl_s=300.0)
ITEMS = [
    QAItem("a", "How deep are tomato seeds sown?", ("gardening/tomatoes.md",)),
    QAItem("b", "What is the TCP three-way handshake?", ("networking/tcp.md",)),
    QAItem("c", "How do I prune roses?", ("gardening/pruning.md",)),
]


class Scripted:
    """Routes every question to the gardening block (a fixed route, so costs differ only by the rate)."""

    def __init__(self, block: str) -> None:
        self.block = block

    def route(self, question: str, *, observe: bool = True, now: float | None = None) -> Route:
        return Route("category", (self.block,))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CompiledCorpus, TopK]:
    root = tmp_path_factory.mktemp("topics")
    result = build_topics(root)
    corpus = result.corpus
    topk = TopK(corpus, open_index(corpus, load_embedder()), ITEMS, 0.5)
    return root / "build", corpus, topk


def test_rows_carry_their_rate_and_match_a_one_rate_run(built: tuple[Path, CompiledCorpus, TopK]) -> None:
    _, corpus, topk = built
    garden = corpus.category_block_ids()[2]
    asked: list[tuple[int, float]] = []

    def make_router(window: int, rate: float) -> Scripted:
        asked.append((window, rate))
        return Scripted(garden)

    kwargs = {"rules": RULES, "reserved_tokens": 100}
    report = evaluate_rates(corpus, ITEMS, make_router, topk, [2000, 4000], rates_per_min=[60, 0.1, 60], **kwargs)
    assert report["rates_per_min"] == [0.1, 60] and "rate_per_min" not in report
    assert [(r["rate_per_min"], r["window"]) for r in report["windows"]] == [
        (0.1, 2000),
        (0.1, 4000),
        (60, 2000),
        (60, 4000),
    ]
    assert asked == [(2000, 0.1), (4000, 0.1), (2000, 60), (4000, 60)]  # each router knows the traffic it is priced for
    for rate in (0.1, 60):
        alone = evaluate_windows(
            corpus, ITEMS, lambda w: Scripted(garden), topk, [2000, 4000], rate_per_min=rate, **kwargs
        )
        assert [r for r in report["windows"] if r["rate_per_min"] == rate] == alone["windows"]
    slow, fast = report["windows"][0]["router"], report["windows"][2]["router"]
    assert slow["usd_per_1k"] > fast["usd_per_1k"]  # 10 min apart the 5-minute cache expires: every prompt writes
    one = evaluate_rates(corpus, ITEMS, make_router, topk, [2000], rates_per_min=[10], **kwargs)
    assert one["rate_per_min"] == 10 and one["rates_per_min"] == [10]  # --rate-per-min keeps its report
    with pytest.raises(ValueError, match="positive"):
        evaluate_rates(corpus, ITEMS, make_router, topk, [2000], rates_per_min=[0, 10], **kwargs)


def test_parse_rates_sorts_and_names_the_option() -> None:
    assert parse_rates("60, 2,10,2") == [2.0, 10.0, 60.0]
    assert [short_window(w) for w in (8192, 131072, 200000, 1000000)] == ["8k", "128k", "200k", "1M"]  # plot labels
    for bad in ("2,x", "", "0,10", "-1", "inf"):
        with pytest.raises(typer.BadParameter, match="questions per minute") as info:
            parse_rates(bad)
        assert info.value.param_hint == "--rates"


def test_the_cli_reports_every_rate_in_json_and_plot(built: tuple[Path, CompiledCorpus, TopK], tmp_path: Path) -> None:
    build, _, _ = built
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"id": i.id, "question": i.question, "gold": list(i.gold)}) + "\n" for i in ITEMS))
    plot = tmp_path / "rates.png"
    args = ["eval-router", "--corpus", str(build), "--qa", str(qa), "--windows", "3000,6000", "--rates", "2,60"]
    result = CliRunner().invoke(app, [*args, "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rates_per_min"] == [2.0, 60.0]
    assert [(r["rate_per_min"], r["window"]) for r in report["windows"]] == [
        (2, 3000),
        (2, 6000),
        (60, 3000),
        (60, 6000),
    ]
    assert {c["rate_per_min"] for c in report["topk_curve"]} == {2.0, 60.0}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    both = CliRunner().invoke(app, [*args, "--rate-per-min", "5"])
    assert both.exit_code == 2 and "--rates" in both.output and "not both" in both.output
    bad = CliRunner().invoke(app, [*args[:-1], "2,fast"])
    assert bad.exit_code == 2 and "--rates" in bad.output and "2,fast" in bad.output
    table = CliRunner().invoke(app, [*args[:-2], "--rate-per-min", "5"])  # the one-rate option still works
    assert table.exit_code == 0, table.output
    assert "5/min" in table.output and "TTL" in table.output
