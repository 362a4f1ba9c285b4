"""OpenAI chat requests → facade inputs: system after corpus, history verbatim, clear 400s."""

from __future__ import annotations

import re

import pytest

from ragcache.config import BackendConfig
from ragcache.prompt import Message
from ragcache.server.openai_compat import InvalidChatRequest, chat_inputs, generation_options
from ragcache.server.schemas import ChatCompletionRequest


def request(*messages: tuple[str, object], **kw: object) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="small", messages=[{"role": r, "content": c} for r, c in messages], **kw)


def test_system_messages_become_context_and_turns_become_history() -> None:
    inputs = chat_inputs(
        request(("system", "Be brief."), ("user", "Q1"), ("assistant", "A1"), ("developer", "Cite."), ("user", "Q2")),
        max_history=8,
    )
    assert inputs.question == "Q2"
    assert inputs.context == "Be brief.\n\nCite."
    assert inputs.history == (Message("user", "Q1"), Message("assistant", "A1"))


def test_text_parts_are_joined_and_other_parts_refused() -> None:
    parts = [{"type": "text", "text": "What is "}, {"type": "text", "text": "SQLite?"}]
    assert chat_inputs(request(("user", parts)), max_history=8).question == "What is SQLite?"
    with pytest.raises(InvalidChatRequest, match=r"messages\[0\]\.content\[0\] has type 'image_url'") as caught:
        chat_inputs(request(("user", [{"type": "image_url", "image_url": {"url": "x"}}])), max_history=8)
    assert caught.value.param == "messages.0.content.0.type"


@pytest.mark.parametrize(
    ("messages", "code", "text"),
    [
        ([("user", "Q"), ("assistant", "A")], "invalid_request", "last non-system message must have role 'user'"),
        ([("system", "only system")], "invalid_request", "last non-system message"),
        ([("user", "   ")], "invalid_request", "question (last user message) is empty"),
        ([("tool", "x"), ("user", "Q")], "unsupported_role", "tool and function messages are not supported"),
        ([("user", "Q"), ("assistant", "A")] * 3 + [("user", "Q")], "history_too_long", "max_history_messages"),
    ],
)
def test_bad_conversations_are_refused_clearly(messages: list, code: str, text: str) -> None:
    with pytest.raises(InvalidChatRequest, match=re.escape(text)) as caught:
        chat_inputs(request(*messages), max_history=4)
    assert caught.value.code == code


def test_options_fall_back_to_the_backend_config() -> None:
    backend = BackendConfig(max_output_tokens=99, temperature=0.3)
    assert generation_options(backend).max_tokens == 99
    assert generation_options(backend).temperature == 0.3
    options = generation_options(backend, max_tokens=5, temperature=0.0, stop="END", seed=1)
    assert (options.max_tokens, options.temperature, options.stop, options.seed) == (5, 0.0, ("END",), 1)


def test_n_above_one_is_refused_by_the_schema() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1"):
        request(("user", "Q"), n=2)
