"""Invariant 3 (stable → volatile) on the request each remote backend really sends.

For every backend request shape, the part a cache stores — the stable system
content up to its last cache breakpoint — holds nothing volatile (session
context, history, snippets, the question), everything volatile comes after it,
and its bytes are identical for two different questions. The bodies are the
ones the backends build for their SDK calls (no request is sent; the hosted
APIs cannot run here).

The local backend renders ``Prompt.messages()`` with its chat template; that
list is checked here, the local engine's own token blocks in its own tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ragcache.backends.anthropic.backend import AnthropicBackend
from ragcache.backends.base import GenerationOptions
from ragcache.backends.openai.backend import OpenAIBackend
from ragcache.backends.vllm.backend import VllmBackend
from ragcache.config import BackendConfig, CacheConfig
from ragcache.prompt import Message, Prompt, Route, Segment, SegmentKind, Snippet, assemble_prompt

STABLE = (
    Segment(SegmentKind.INSTRUCTIONS, "Answer from the documents; cite them.\n", "instructions"),
    Segment(SegmentKind.CORPUS, "SQLite stores a database in one file.\n" * 200, "category:storage"),
    Segment(SegmentKind.EXAMPLES, "Q: Is SQLite a server?\nA: No.\n", "examples"),
)
VOLATILE = ("CTX-Ada-13:05", "HIST-first-turn", "HIST-first-answer", "SNIP-excerpt")


def prompt(question: str) -> Prompt:
    route = Route("blocks", ("category:storage",), snippets=(Snippet("c1", "docs/wal.md", "SNIP-excerpt"),))
    history = (Message("user", "HIST-first-turn"), Message("assistant", "HIST-first-answer"))
    return assemble_prompt(STABLE, question, route=route, context="CTX-Ada-13:05", history=history)


def config(kind: str, model: str = "m", **options: object) -> BackendConfig:
    return BackendConfig(kind=kind, base_url="http://127.0.0.1:9", model=model, options=options)


def openai_body(model: str = "m", **options: object) -> Callable[[Prompt], tuple[dict[str, Any], Any]]:
    backend = OpenAIBackend(config("openai", model, **options), CacheConfig())

    def build(p: Prompt) -> tuple[dict[str, Any], Any]:
        body = backend.request(p, GenerationOptions()).body
        messages = body["input"] if "input" in body else body["messages"]
        system = messages[0]["content"]
        if isinstance(system, list):  # explicit breakpoints: the parts up to the last one
            last = max(i for i, part in enumerate(system) if "prompt_cache_breakpoint" in part)
            return body, system[: last + 1]
        return body, messages[0]

    return build


def vllm_body(p: Prompt) -> tuple[dict[str, Any], Any]:
    body = VllmBackend(config("vllm"), CacheConfig()).chat_request(p, GenerationOptions(cache_salt="t")).body
    return body, body["messages"][0]


def anthropic_body(p: Prompt) -> tuple[dict[str, Any], Any]:
    body = AnthropicBackend(config("anthropic"), CacheConfig()).request_body(p, GenerationOptions())
    last = max(i for i, block in enumerate(body["system"]) if "cache_control" in block)
    return body, body["system"][: last + 1]


def local_messages(p: Prompt) -> tuple[dict[str, Any], Any]:
    messages = p.messages()
    return {"messages": messages}, messages[0]


BUILDERS = {
    "openai chat": openai_body(),
    "openai chat, explicit breakpoints": openai_body("gpt-5.6-terra", explicit_breakpoints=True),
    "openai responses": openai_body(api="responses"),
    "openai responses, explicit breakpoints": openai_body("gpt-5.6-terra", api="responses", explicit_breakpoints=True),
    "vllm": vllm_body,
    "anthropic": anthropic_body,
    "local (Prompt.messages)": local_messages,
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_nothing_volatile_precedes_the_cached_prefix_and_its_bytes_do_not_change(name: str) -> None:
    build = BUILDERS[name]
    body, stable = build(prompt("Q-what-is-WAL?"))
    stable_json, body_json = json.dumps(stable), json.dumps(body)
    assert "Answer from the documents" in stable_json and "SQLite stores" in stable_json
    needle = stable_json[:-1] if isinstance(stable, list) else stable_json  # a slice: leave its "]" open
    end = body_json.index(needle) + len(needle)
    for marker in (*VOLATILE, "Q-what-is-WAL?"):
        assert marker not in stable_json, f"{name}: {marker} inside the cached prefix"
        assert body_json.find(marker, end) > 0, f"{name}: {marker} missing after the cached prefix"
    _, other = build(prompt("Q-how-big-can-a-blob-be?"))
    assert json.dumps(other) == stable_json  # same bytes whatever the question
