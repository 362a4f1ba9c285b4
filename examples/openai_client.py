"""Talk to the ragcache REST endpoint with the official ``openai`` SDK.

Start the server first (it serves the corpus named in the config as a model):

    .venv/bin/ragcache build corpora/small
    .venv/bin/ragcache serve --port 8000
    .venv/bin/python examples/openai_client.py --base-url http://127.0.0.1:8000/v1

Set RAGCACHE_API_KEY when the server was started with keys (RAGCACHE_API_KEYS).
The client's system message is session context: ragcache puts it *after* the
cached corpus, so it never breaks the prefix cache.
"""

from __future__ import annotations

import argparse
import os

import openai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default=None, help="corpus name (default: the first one the server lists)")
    args = parser.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=os.environ.get("RAGCACHE_API_KEY", "unused"))
    model = args.model or client.models.list().data[0].id
    messages = [
        {"role": "system", "content": "Answer in one or two sentences."},
        {"role": "user", "content": "Does SQLite need a separate server process?"},
    ]

    response = client.chat.completions.create(model=model, messages=messages, max_tokens=64)
    print("answer:", response.choices[0].message.content.strip())
    details = response.usage.prompt_tokens_details
    print(f"usage: prompt={response.usage.prompt_tokens} cached={details.cached_tokens}")
    extra = response.model_extra["ragcache"]
    print(f"route: {extra['route']['mode']} {extra['route']['blocks']}  sources: {extra['sources']}")

    # A follow-up turn, streamed: the history travels with the request.
    messages += [
        {"role": "assistant", "content": response.choices[0].message.content},
        {"role": "user", "content": "And how do several processes share one database?"},
    ]
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=64, stream=True, stream_options={"include_usage": True}
    )
    print("follow-up: ", end="")
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
        if chunk.usage is not None:
            print(
                f"\nusage: prompt={chunk.usage.prompt_tokens} cached={chunk.usage.prompt_tokens_details.cached_tokens}"
            )


if __name__ == "__main__":
    main()
