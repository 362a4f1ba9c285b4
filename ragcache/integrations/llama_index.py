"""Use ragcache from LlamaIndex: a query engine and a retriever over a :class:`RagCache`.

- :class:`RagCacheQueryEngine` answers with ragcache's own backend (sync,
  async, streaming). Its ``Response.source_nodes`` are the documents that were
  in the prompt, each a ``TextNode`` whose ``id_`` is the document's citation
  id (``[doc: <id>]``), and ``Response.metadata`` carries what the cache did
  (``usage``, ``route``, ``ttft_s``, ``cost_usd`` …). Wrap it in a
  ``QueryEngineTool`` for an agent, or await it inside a ``Workflow`` step.
- :class:`RagCacheRetriever` returns the routed corpus blocks (in corpus order)
  and then the tail snippets as ``NodeWithScore``, for a pipeline that keeps
  its own LLM but wants a stable, cache-friendly context: the same question
  always yields the same nodes in the same order, and a block node's text is
  the block's exact bytes (metadata is kept out of the LLM and embed text).
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ragcache.app import Answer, RagCache
from ragcache.backends.base import GenerationOptions
from ragcache.prompt import Prompt, SegmentKind

__all__ = ["RagCacheQueryEngine", "RagCacheRetriever", "answer_metadata", "source_nodes"]

_DOCUMENT = re.compile(r'<document id="([^"]*)" title="([^"]*)"(?: part="\d+")?>\n(.*?)</document>\n', re.DOTALL)


def _node(node_id: str, text: str, metadata: dict[str, Any]) -> TextNode:
    """A node whose LLM/embed text is exactly ``text`` (metadata stays out of the prompt)."""
    keys = list(metadata)
    return TextNode(id_=node_id, text=text, metadata=metadata,
                    excluded_llm_metadata_keys=keys, excluded_embed_metadata_keys=keys)  # fmt: skip


def source_nodes(rag: RagCache, prompt: Prompt) -> list[NodeWithScore]:
    """The prompt's documents as nodes (id = citation id), corpus documents first, then snippet-only ones."""
    route = prompt.route
    texts: dict[str, list[str]] = {}
    info: dict[str, dict[str, Any]] = {}
    for segment in prompt.stable:
        if segment.kind != SegmentKind.CORPUS or not segment.block_id:
            continue
        for doc_id, title, text in _DOCUMENT.findall(segment.text):
            doc_id = html.unescape(doc_id)
            texts.setdefault(doc_id, []).append(text)
            info.setdefault(doc_id, {"title": html.unescape(title), "block_id": segment.block_id, "kind": "document"})
    for snippet in prompt.snippets:
        if snippet.doc_id not in info:
            info[snippet.doc_id] = {"title": "", "block_id": None, "kind": "snippet"}
            texts[snippet.doc_id] = []
        if info[snippet.doc_id]["kind"] == "snippet":
            texts[snippet.doc_id].append(snippet.text)
    nodes = []
    for doc_id in rag.sources(prompt):
        meta = {**info.get(doc_id, {"title": "", "block_id": None, "kind": "document"}), "citation": f"[doc: {doc_id}]"}
        score = route.scores.get(meta["block_id"]) if route is not None and meta["block_id"] else None
        nodes.append(NodeWithScore(node=_node(doc_id, "".join(texts.get(doc_id, [])), meta), score=score))
    return nodes


def answer_metadata(answer: Answer) -> dict[str, Any]:
    """What ragcache did for one answer, as ``Response.metadata``."""
    return {
        "usage": answer.usage.to_dict(),
        "route": answer.route.to_dict() if answer.route is not None else None,
        "sources": list(answer.sources),
        "ttft_s": answer.ttft_s,
        "latency_s": answer.latency_s,
        "cost_usd": answer.cost_usd,
        "model": answer.model,
        "finish_reason": answer.finish_reason,
    }


class RagCacheQueryEngine(BaseQueryEngine):
    """A LlamaIndex query engine answered by ragcache (its router, stable prefix and backend).

    ``streaming=True`` makes ``query`` return a ``StreamingResponse`` (and
    ``aquery`` an ``AsyncStreamingResponse``) whose ``metadata`` is filled in
    once the stream has been read to the end.
    """

    def __init__(
        self,
        rag: RagCache,
        *,
        options: GenerationOptions | None = None,
        streaming: bool = False,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self.rag = rag
        self.options = options
        self.streaming = streaming

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}

    def _prompt(self, query_bundle: QueryBundle) -> Prompt:
        return self.rag.prompt_for(query_bundle.query_str)

    def _answer(self, prompt: Prompt) -> Response:
        answer = None
        for item in self.rag.stream_prompt(prompt, self.options):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return Response(answer.text, source_nodes(self.rag, prompt), answer_metadata(answer))

    def _deltas(self, prompt: Prompt, metadata: dict[str, Any]) -> Iterator[str]:
        for item in self.rag.stream_prompt(prompt, self.options):
            if isinstance(item, Answer):
                metadata.update(answer_metadata(item))
            else:
                yield item

    def _query(self, query_bundle: QueryBundle) -> Response | StreamingResponse:
        prompt = self._prompt(query_bundle)
        if not self.streaming:
            return self._answer(prompt)
        metadata: dict[str, Any] = {}
        return StreamingResponse(self._deltas(prompt, metadata), source_nodes(self.rag, prompt), metadata)

    async def _aquery(self, query_bundle: QueryBundle) -> Response | AsyncStreamingResponse:
        prompt = await asyncio.to_thread(self._prompt, query_bundle)
        if not self.streaming:
            return await asyncio.to_thread(self._answer, prompt)
        metadata: dict[str, Any] = {}
        deltas = self._deltas(prompt, metadata)

        async def agen() -> AsyncIterator[str]:
            done = object()
            while (item := await asyncio.to_thread(next, deltas, done)) is not done:
                yield item  # type: ignore[misc]

        return AsyncStreamingResponse(agen(), source_nodes(self.rag, prompt), metadata)


class RagCacheRetriever(BaseRetriever):
    """The routed corpus blocks, then the tail snippets, as ``NodeWithScore`` in a stable order.

    Block nodes have ids ``block:<block id>`` and the block's exact text;
    snippet nodes ``snippet:<chunk id>`` with ``doc_id`` in their metadata.
    """

    def __init__(self, rag: RagCache, *, callback_manager: CallbackManager | None = None) -> None:
        super().__init__(callback_manager=callback_manager)
        self.rag = rag

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        route = self.rag.router.route(query_bundle.query_str, observe=False)
        corpus = self.rag.corpus
        nodes = []
        for block_id in route.block_ids:
            meta = {"kind": "block", "block_id": block_id, "documents": list(corpus.block(block_id).documents)}
            node = _node(f"block:{block_id}", corpus.block_text(block_id), meta)
            nodes.append(NodeWithScore(node=node, score=route.scores.get(block_id)))
        for snippet in route.snippets:
            meta = {"kind": "snippet", "doc_id": snippet.doc_id, "chunk_id": snippet.chunk_id}
            node = _node(f"snippet:{snippet.chunk_id}", snippet.text, meta)
            nodes.append(NodeWithScore(node=node, score=snippet.score))
        return nodes

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)
