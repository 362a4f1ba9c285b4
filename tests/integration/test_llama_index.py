"""ragcache inside LlamaIndex: the real ``llama-index-core`` (query engine tool,
workflow, retriever) over a RagCache on the local backend (SmolLM2 on CPU)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from llama_index.core.base.response.schema import Response, StreamingResponse
from llama_index.core.tools import QueryEngineTool
from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step

from ragcache.app import RagCache
from ragcache.backends.base import GenerationOptions
from ragcache.config import Config, RouterConfig
from ragcache.integrations.llama_index import RagCacheQueryEngine, RagCacheRetriever

OPTIONS = GenerationOptions(max_tokens=6)


def test_query_engine_tool_answers_with_document_nodes_and_cache_usage(small_rag: RagCache) -> None:
    tool = QueryEngineTool.from_defaults(
        RagCacheQueryEngine(small_rag, options=OPTIONS), name="sqlite_docs", description="SQLite documentation."
    )
    first = tool.call("Is SQLite a server?")
    response = first.raw_output
    assert isinstance(response, Response) and first.content == response.response
    ids = [n.node.node_id for n in response.source_nodes]
    assert ids == list(response.metadata["sources"]) and "overview/serverless.html" in ids
    assert set(ids) <= set(small_rag.corpus.documents)
    node = response.source_nodes[ids.index("overview/serverless.html")].node
    assert node.metadata["citation"] == "[doc: overview/serverless.html]" and "server" in node.get_content().lower()
    assert response.metadata["route"]["blocks"] == ["full"]
    assert response.metadata["usage"]["input_tokens"] > 3000

    second = tool.call("Does SQLite need configuration?").raw_output
    assert second.metadata["usage"]["cached_tokens"] > 3000  # the corpus prefix, reused
    assert [n.node.node_id for n in second.source_nodes] == ids  # same prefix, same documents


def test_streaming_and_a_workflow_step(small_rag: RagCache) -> None:
    streaming = RagCacheQueryEngine(small_rag, options=OPTIONS, streaming=True).query("Is SQLite a server?")
    assert isinstance(streaming, StreamingResponse) and streaming.metadata == {}
    text = "".join(streaming.response_gen)
    assert text and streaming.metadata["usage"]["input_tokens"] > 3000  # filled in when the stream ends

    engine = RagCacheQueryEngine(small_rag, options=OPTIONS)

    class AskDocs(Workflow):
        @step
        async def answer(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await engine.aquery(ev.question))

    async def main() -> Any:
        return await AskDocs(timeout=600).run(question="What are the storage classes?")

    result = asyncio.run(main())
    assert isinstance(result, Response) and result.response
    assert "datatypes/storage-classes.md" in [n.node.node_id for n in result.source_nodes]
    assert result.metadata["usage"]["cached_tokens"] > 3000


def test_retriever_returns_blocks_then_snippets_in_a_stable_order(small_build: Path, local_model: Path) -> None:
    # a small window, so each run is one block and the tail has chunks from other blocks
    router = RouterConfig(mode="blocks", window_tokens=2400, history_allowance=0, snippet_tokens=256)
    config = Config(corpus=small_build, build_dir=small_build, router=router)
    rag = RagCache.from_config(config)
    try:
        retriever = RagCacheRetriever(rag)
        nodes = retriever.retrieve("How does SQLite store integers and text?")
        again = asyncio.run(retriever.aretrieve("How does SQLite store integers and text?"))
        ids = [n.node.node_id for n in nodes]
        assert ids == [n.node.node_id for n in again] and [n.score for n in nodes] == [n.score for n in again]
        blocks = [n for n in nodes if n.node.metadata["kind"] == "block"]
        snippets = [n for n in nodes if n.node.metadata["kind"] == "snippet"]
        assert nodes == blocks + snippets and blocks and snippets
        order = [b for b in rag.corpus.category_block_ids()]
        block_ids = [n.node.metadata["block_id"] for n in blocks]
        assert block_ids == sorted(block_ids, key=order.index)
        assert blocks[0].node.get_content(metadata_mode="llm") == rag.corpus.block_text(block_ids[0])
        assert all(n.node.metadata["doc_id"] in rag.corpus.documents for n in snippets)
    finally:
        rag.close()
