"""Ask questions with the Python API and see what the prompt cache did.

    .venv/bin/python examples/ask.py [--config configs/default.yaml] ["your question" ...]

Builds corpora/small first if it is not built yet. The second question reuses
the warm corpus prefix: compare its cached tokens and time to first token.
"""

from __future__ import annotations

import argparse

from ragcache import RagCache, build_corpus, load_config

QUESTIONS = ["Does SQLite need a separate server process?", "Which storage classes does SQLite use?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="config YAML (default: built-in defaults)")
    parser.add_argument("questions", nargs="*", default=QUESTIONS)
    args = parser.parse_args()

    config = load_config(args.config)
    if not (config.resolved_build_dir() / "manifest.json").exists():
        build_corpus(config.resolved_corpus(), config.resolved_build_dir())
    rag = RagCache.from_config(config)
    for question in args.questions:
        answer = rag.ask(question)
        usage = answer.usage
        print(f"Q: {question}\nA: {answer.text.strip()}")
        print(
            f"   route={answer.route.mode} blocks={list(answer.route.block_ids)} sources={list(answer.sources)}\n"
            f"   prompt={usage.input_tokens} cached={usage.cached_tokens} ({usage.cached_ratio:.0%}) "
            f"output={usage.output_tokens} ttft={answer.ttft_s:.2f}s latency={answer.latency_s:.2f}s\n"
        )


if __name__ == "__main__":
    main()
