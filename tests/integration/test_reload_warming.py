"""A reload retires the old build's keep-warm and warms the new build's warm set (server/reload.py),
over the real local model and a two-document corpus, in-process (the uvicorn side is
tests/integration/test_live_reload.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ragcache.app import RagCache
from ragcache.config import CacheConfig, Config
from ragcache.corpus.compile import build_corpus
from ragcache.server.corpora import Corpora
from ragcache.server.metrics import ServerMetrics
from ragcache.server.reload import Reloader
from ragcache.server.warming import Warming
from tests.server_harness import metric_value


def test_a_reload_swaps_the_facade_stops_the_old_keep_warm_and_warms_the_new_build(
    tmp_path: Path, local_model: Path
) -> None:
    corpus = tmp_path / "notes"
    (corpus / "docs").mkdir(parents=True)
    (corpus / "corpus.yaml").write_text("name: notes\n", encoding="utf-8")
    (corpus / "docs" / "a.md").write_text("# A\n\nAlpha is first.\n", encoding="utf-8")
    build_corpus(corpus)
    cache = CacheConfig(warm_on_start=True, keep_warm=True, traffic_dir=str(tmp_path / "traffic"))
    old = RagCache.from_config(Config(corpus=corpus, cache=cache, backend={"max_output_tokens": 2}))
    corpora = Corpora([old])
    warming, metrics = Warming(corpora), ServerMetrics()
    reloader = Reloader(corpora, warming, metrics, poll_s=0)
    try:

        async def scenario() -> None:
            await warming.warm_all()
            old_warmer = warming._warmers["notes"]
            assert old_warmer._thread is not None  # keep-warm runs for the first build
            assert (await reloader.reload("notes")).status == "unchanged"
            (corpus / "docs" / "a.md").write_text("# A\n\nAlpha is second now.\n", encoding="utf-8")
            build_corpus(corpus)
            result = await reloader.reload("notes")
            assert result.status == "reloaded" and result.previous == old.corpus.fingerprint
            assert old_warmer._thread is None  # retired at once
            await asyncio.gather(*reloader._warm_tasks)
            assert warming._warmers["notes"]._thread is not None  # keep-warm for the new build

        asyncio.run(scenario())
        new = corpora.get("notes")
        assert new is not old and new.backend is old.backend and new.corpus.fingerprint != old.corpus.fingerprint
        assert warming.is_ready("notes")
        warmed = {r["fingerprint"]: r["status"] for r in warming.results["notes"]}
        assert warmed == {p.prefix_fingerprint: "cached" for p in new.warm_set()}
        assert any("Alpha is second now." in new.corpus.block_text(b) for b in new.corpus.category_block_ids())
        text = metrics.exposition()[0].decode()
        assert metric_value(text, "ragcache_corpus_build_info", corpus="notes", fingerprint=new.corpus.fingerprint) == 1
        assert metric_value(text, "ragcache_corpus_reloads_total", corpus="notes", outcome="reloaded") == 1
    finally:
        warming.stop()
        old.close()
