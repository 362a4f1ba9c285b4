"""A multi-turn chat in the terminal with the Python API (a session keeps history).

    .venv/bin/python examples/chat.py [--config configs/default.yaml]

Type a question, an empty line or Ctrl-D ends. Answers stream as they are
generated; each turn prints how many prompt tokens came from the cache — the
corpus prefix stays warm while the history grows after it.
"""

from __future__ import annotations

import argparse
import sys

from ragcache import RagCache, build_corpus, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="config YAML (default: built-in defaults)")
    args = parser.parse_args()

    config = load_config(args.config)
    if not (config.resolved_build_dir() / "manifest.json").exists():
        build_corpus(config.resolved_corpus(), config.resolved_build_dir())
    rag = RagCache.from_config(config)
    session = rag.session()
    print(f"corpus {rag.corpus.name!r} ({rag.corpus.manifest.title}); an empty line quits")
    while True:
        try:
            question = input("you> ").strip()
        except EOFError:
            break
        if not question:
            break
        answer = None
        print("bot> ", end="", flush=True)
        for item in session.stream(question):
            if isinstance(item, str):
                print(item, end="", flush=True)
            else:
                answer = item
        if answer is not None:
            usage = answer.usage
            print(
                f"\n     [{answer.route.mode}: cached {usage.cached_tokens}/{usage.input_tokens} tokens, "
                f"ttft {answer.ttft_s:.2f}s]",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
