"""Use ragcache from LlamaIndex: a QueryEngineTool, a Workflow step and a retriever.

    .venv/bin/python examples/llama_index_tool.py [--config configs/default.yaml] [--max-tokens 32]

Builds corpora/small first if it is not built yet. The tool answers with
ragcache's backend and returns the prompt's documents as source nodes (node id
= citation id) and the cache usage in ``metadata``; the second question reads
the corpus prefix from the cache. The retriever hands the same stable context
to a pipeline that keeps its own LLM.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from llama_index.core.tools import QueryEngineTool
from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step

from ragcache import RagCache, build_corpus, load_config
from ragcache.backends.base import GenerationOptions
from ragcache.integrations.llama_index import RagCacheQueryEngine, RagCacheRetriever


def show(label: str, response: Any) -> None:
    usage, route = response.metadata["usage"], response.metadata["route"]
    print(f"{label}: {str(response).strip()}")
    print(f"   sources: {[n.node.node_id for n in response.source_nodes]}")
    print(f"   prompt={usage['input_tokens']} cached={usage['cached_tokens']} route={route['mode']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="config YAML (default: built-in defaults)")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    config = load_config(args.config)
    if not (config.resolved_build_dir() / "manifest.json").exists():
        build_corpus(config.resolved_corpus(), config.resolved_build_dir())
    rag = RagCache.from_config(config)
    engine = RagCacheQueryEngine(rag, options=GenerationOptions(max_tokens=args.max_tokens))

    # 1. As a tool an agent can call (FunctionAgent / ReActAgent take a list of these).
    tool = QueryEngineTool.from_defaults(engine, name="sqlite_docs", description="Answers from the SQLite docs.")
    show("tool", tool.call("Does SQLite need a separate server process?").raw_output)

    # 2. Inside a Workflow step.
    class AskDocs(Workflow):
        @step
        async def answer(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await engine.aquery(ev.question))

    async def run() -> Any:
        return await AskDocs(timeout=600).run(question="Which storage classes does SQLite use?")

    show("workflow", asyncio.run(run()))

    # 3. Only the stable context, for a pipeline with its own LLM.
    for node in RagCacheRetriever(rag).retrieve("How are integers stored?"):
        print(f"retriever: {node.node.node_id} score={node.score} ({len(node.node.get_content())} chars)")
    rag.close()


if __name__ == "__main__":
    main()
