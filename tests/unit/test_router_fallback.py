"""The interim first-fit router and ``create_router``'s budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcache.backends.base import Capabilities
from ragcache.config import RouterConfig
from ragcache.corpus.manifest import BlockRecord, CategoryRecord, CompiledCorpus, Manifest
from ragcache.errors import EmptyCorpusError, RoutingError
from ragcache.router import create_router
from ragcache.router.fallback import FirstFitRouter
from ragcache.router.types import Route


def corpus(*categories: tuple[str, int], full: int | None = None) -> CompiledCorpus:
    blocks = [BlockRecord("instructions", "instructions", "0" * 64, 10, 50)]
    blocks += [BlockRecord(f"category:{c}", "category", "1" * 64, 10, t, (f"{c}/doc.md",), c) for c, t in categories]
    if full is not None:
        blocks.append(BlockRecord("full", "full", "2" * 64, 10, full, tuple(f"{c}/doc.md" for c, _ in categories)))
    manifest = Manifest(
        name="t", title="t", fingerprint="f", tokenizer="smollm2", tokens_estimated=False, settings={},
        categories=tuple(CategoryRecord(c, c, (f"category:{c}",), t) for c, t in categories),
        blocks=tuple(blocks), documents=(), chunks_sha256="", chunk_count=0,
    )
    return CompiledCorpus(Path("/nonexistent"), manifest)


def test_the_full_block_when_it_fits() -> None:
    router = FirstFitRouter(corpus(("a", 400), ("b", 500), full=900), budget_tokens=1000)
    route = router.route("anything")
    assert route.mode == "full" and route.block_ids == ("full",)
    assert router.prefixes() == [("full",)]
    assert router.route("next", previous=route).sticky


def test_else_the_first_category_block_that_fits() -> None:
    router = FirstFitRouter(corpus(("a", 800), ("b", 500), full=1300), budget_tokens=600)
    assert router.route("q") == Route("category", ("category:b",), reason=router.route("q").reason)
    assert router.prefixes() == [("category:b",)]


def test_nothing_fits_is_a_routing_error_and_no_documents_an_empty_corpus_error() -> None:
    with pytest.raises(RoutingError, match="no block fits the 100-token budget"):
        FirstFitRouter(corpus(("a", 800)), budget_tokens=100)
    with pytest.raises(EmptyCorpusError, match="has no documents"):
        FirstFitRouter(corpus(), budget_tokens=100)


def test_create_router_budget_leaves_room_for_output_history_snippets_and_instructions() -> None:
    config = RouterConfig(history_allowance=1000, snippet_tokens=500)
    router = create_router(corpus(("a", 10)), config, Capabilities(context_window=8192), reserved_output=256)
    assert router.budget == 8192 - 256 - 1000 - 500 - 50
