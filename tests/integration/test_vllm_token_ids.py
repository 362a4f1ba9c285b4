"""The ``vllm`` backend's token-id prompts (``prompt_format: token_ids``) against a REAL vLLM server.

The stable prefix's ids are learned from the server's ``/tokenize`` and the request
goes to ``/v1/completions``; these tests check that the ids are exactly the chat
rendering, that token-id requests hit the prefix cache, that chat and token-id
requests share the same KV blocks, and that a template that does not decompose
falls back to chat (a real server rendering a real template, passed per request).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest

from ragcache.backends.base import GenerationOptions, create_backend
from ragcache.backends.vllm.ids import PromptIds, TemplateRejected
from ragcache.config import BackendConfig, CacheConfig
from ragcache.prompt import Message, Prompt, Segment, SegmentKind

pytestmark = pytest.mark.vllm
RUN = uuid.uuid4().hex[:8]
BLOCK = 128
OPTS = GenerationOptions(max_tokens=4)
CORPUS = "SQLite stores each value in one of five storage classes: NULL, INTEGER, REAL, TEXT and BLOB. " * 30

# Gemma/Mistral-style: the system message is folded into the first user turn, so the
# rendering does not split after a system turn (there is none).
FOLDING_TEMPLATE = (
    "{%- set sys = messages[0]['content'] if messages[0]['role'] == 'system' else '' -%}"
    "{%- for m in messages if m['role'] != 'system' -%}"
    "<|im_start|>{{ m['role'] }}\n{% if loop.first %}{{ sys }}\n\n{% endif %}{{ m['content'] }}<|im_end|>\n"
    "{%- endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)


def stable(tag: str) -> tuple[Segment, ...]:
    return (
        Segment(SegmentKind.INSTRUCTIONS, f"[{tag} {RUN}] Answer from the documentation below.", "instructions"),
        Segment(SegmentKind.CORPUS, CORPUS, "corpus"),
    )


def backend(url: str, **options: object) -> Any:
    config = BackendConfig(kind="vllm", base_url=url, model="smollm2", max_retries=0, timeout_s=300, options=options)
    return create_backend(config, CacheConfig())


def chat_rendering(url: str, prompt: Prompt) -> list[int]:
    """What the chat endpoint computes for ``prompt``: the server's template and tokenizer."""
    body = {"model": "smollm2", "messages": prompt.messages(), "add_generation_prompt": True}
    return httpx.post(f"{url}/tokenize", json=body, timeout=60).json()["tokens"]


def test_token_ids_are_the_chat_rendering_for_every_prompt_shape(vllm_server) -> None:
    engine = backend(vllm_server.url)
    prefix = stable("shapes")
    history = (Message("user", "What is NULL?"), Message("assistant", "  The absence of a value.\n"))
    prompts = [
        Prompt(stable=prefix, question="What are the storage classes?"),
        Prompt(stable=prefix, question="\n\n  leading and trailing whitespace  \n"),
        Prompt(stable=prefix, question="And BLOB?", history=history, context="Session: Ada, 13:05"),
    ]
    for prompt in prompts:
        request = engine.request(prompt, OPTS)
        assert request.api == "completions"
        assert request.body["prompt"] == chat_rendering(vllm_server.url, prompt)
    assert engine.prompt_ids.local is not None  # the tails above were rendered here, with the server's folder
    learned = engine.prompt_ids.prefix_ids(prompts[0])
    assert all(engine.request(p, OPTS).body["prompt"][: len(learned)] == list(learned) for p in prompts)
    assert engine.prefix_tokens(prompts[0]) == len(learned)
    engine.close()


def test_token_id_requests_hit_the_cache_and_share_kv_with_chat(vllm_server) -> None:
    ids, chat = backend(vllm_server.url), backend(vllm_server.url, prompt_format="chat")
    prefix = stable("shared")
    before = ids.prefix_cache_stats()[vllm_server.url]
    first = ids.generate(Prompt(stable=prefix, question="What are the storage classes?"), OPTS)
    second = ids.generate(Prompt(stable=prefix, question="What is type affinity?"), OPTS)
    assert first.usage.cached_tokens == 0
    assert second.usage.cached_tokens >= 4 * BLOCK and second.usage.cached_tokens % BLOCK == 0
    assert second.usage.input_tokens > second.usage.cached_tokens
    after = ids.prefix_cache_stats()[vllm_server.url]
    assert after.hits - before.hits >= second.usage.cached_tokens  # the server's counters agree
    # a chat request of the same prefix reuses the KV the token-id requests computed
    assert chat.request(Prompt(stable=prefix, question="?"), OPTS).api == "chat"
    by_chat = chat.generate(Prompt(stable=prefix, question="Which class holds text?"), OPTS)
    assert by_chat.usage.cached_tokens == second.usage.cached_tokens
    streamed = list(ids.stream(Prompt(stable=prefix, question="And REAL?"), OPTS))
    assert "".join(streamed[:-1]) == streamed[-1].text and streamed[-1].usage.output_tokens > 0
    assert streamed[-1].usage.cached_tokens == second.usage.cached_tokens
    ids.close()
    chat.close()


def folding_tokenizer(url: str) -> Any:
    """``/tokenize`` of the FOLDING_TEMPLATE's rendering (jinja2, as transformers renders templates)."""
    jinja2 = pytest.importorskip("jinja2")
    template = jinja2.Environment().from_string(FOLDING_TEMPLATE)

    def tokenize(payload: dict[str, Any]) -> list[int]:
        text = template.render(messages=payload["messages"], add_generation_prompt=payload["add_generation_prompt"])
        body = {"model": "smollm2", "prompt": text, "add_special_tokens": False}
        return httpx.post(f"{url}/tokenize", json=body, timeout=60).json()["tokens"]

    return tokenize


def refused_tokenizer(url: str) -> Any:
    """``/tokenize`` with a per-request template, which the server refuses (400) unless trusted."""

    def tokenize(payload: dict[str, Any]) -> list[int]:
        body = {"model": "smollm2", "chat_template": FOLDING_TEMPLATE, **payload}
        response = httpx.post(f"{url}/tokenize", json=body, timeout=60)
        if 400 <= response.status_code < 500:
            raise TemplateRejected(response.text)
        return response.json()["tokens"]

    return tokenize


@pytest.mark.parametrize(
    ("tokenizer", "why"),
    [(folding_tokenizer, "does not split after the system turn"), (refused_tokenizer, "/tokenize refused it")],
)
def test_a_prefix_that_does_not_decompose_falls_back_to_chat_logged_once(vllm_server, caplog, tokenizer, why) -> None:
    engine = backend(vllm_server.url)
    engine.prompt_ids = PromptIds(tokenizer(vllm_server.url))
    prefix = stable(f"fallback {why}")
    with caplog.at_level(logging.WARNING, logger="ragcache.backends.vllm.ids"):
        assert engine.request(Prompt(stable=prefix, question="Hi"), OPTS).api == "chat"
        answer = engine.generate(Prompt(stable=prefix, question="What are the storage classes?"), OPTS)
    assert answer.usage.input_tokens > 4 * BLOCK and answer.text  # answered through the chat endpoint
    assert [r.getMessage() for r in caplog.records if why in r.getMessage()] != []
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]  # once, not per request
    assert engine.prompt_ids.prefix_ids(Prompt(stable=prefix, question="x")) is None  # remembered
    engine.close()


def test_tails_are_rendered_here_only_with_the_servers_own_template(vllm_server) -> None:
    """The server's folder loads here (its /v1/models root); the same tokenizer with another template
    renders the probes differently, so its tails go through /tokenize, still the chat rendering."""
    from transformers import AutoTokenizer

    from ragcache.backends.vllm.backend import read_model_root

    root = read_model_root(vllm_server.url, "smollm2")
    assert root is not None
    tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)

    def folding(messages: list[dict[str, str]], generation: bool) -> list[int]:
        return tokenizer.apply_chat_template(messages, chat_template=FOLDING_TEMPLATE, add_generation_prompt=generation,
                                             tokenize=True, return_dict=False)  # fmt: skip

    prompt = Prompt(stable=stable("probes"), question="Which class holds 3.5?", history=(
        Message("user", "Hi"), Message("assistant", "Hello.")))  # fmt: skip
    for options, local in (({}, lambda: folding), ({"tail_tokenizer": "server"}, None)):
        engine = backend(vllm_server.url, **options)
        if local is not None:
            engine.prompt_ids = PromptIds(engine._tokenize, local=local)
        assert engine.request(prompt, OPTS).body["prompt"] == chat_rendering(vllm_server.url, prompt)
        assert engine.prompt_ids.local is None
        engine.close()
