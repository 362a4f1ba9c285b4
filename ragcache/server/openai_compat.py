"""The OpenAI chat wire format, written once: requests in, answers out.

A chat request maps onto :meth:`RagCache.ask` like this (docs/architecture.md, invariant 3):
the last message is the question; earlier user/assistant turns are history,
kept verbatim; every system (or developer) message becomes session context,
placed *after* the corpus so it can never break the cached prefix.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragcache.app import Answer
from ragcache.backends.base import CacheUsage, GenerationOptions
from ragcache.conversation import Conversation
from ragcache.prompt import Message
from ragcache.server.errors import APIError
from ragcache.server.schemas import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageIn,
    ChunkChoice,
    ChunkDelta,
    CompletionUsage,
    PromptTokensDetails,
    RagcacheInfo,
)

if TYPE_CHECKING:
    from ragcache.config import BackendConfig

__all__ = [
    "ChatInputs",
    "CompletionIds",
    "InvalidChatRequest",
    "chat_inputs",
    "completion",
    "completion_chunk",
    "completion_usage",
    "generation_options",
    "jsonable",
    "ragcache_info",
]

_SYSTEM_ROLES = {"system", "developer"}


class InvalidChatRequest(APIError):
    """A well-formed request that ragcache cannot answer as asked (HTTP 400)."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(400, message, param=param, code=code)


@dataclass(frozen=True)
class ChatInputs:
    """What one request asks the facade: the question, session context, and the conversation so far:
    ``history`` as a stateless client sends it (its words and the answers), or the ``conversation``
    a ``/v1/ask`` session holds (``RagCache.plan_turn``)."""

    question: str
    context: str | None
    history: tuple[Message, ...] = ()
    conversation: Conversation | None = None


@dataclass(frozen=True)
class CompletionIds:
    """Identifiers of one completion, shared by all its chunks."""

    id: str
    created: int
    model: str
    fingerprint: str

    @classmethod
    def new(cls, model: str, fingerprint: str) -> CompletionIds:
        return cls(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=model,
            fingerprint=f"fp_{fingerprint[:16]}",
        )


def _text(message: ChatMessageIn, index: int) -> str:
    if message.content is None:
        if message.role == "assistant":
            return ""
        raise InvalidChatRequest(f"messages[{index}].content is missing", f"messages.{index}.content")
    if isinstance(message.content, str):
        return message.content
    parts = []
    for n, part in enumerate(message.content):
        if part.type != "text" or part.text is None:
            raise InvalidChatRequest(
                f"messages[{index}].content[{n}] has type {part.type!r}; only text parts are supported",
                f"messages.{index}.content.{n}.type",
                "unsupported_content",
            )
        parts.append(part.text)
    return "".join(parts)


def chat_inputs(request: ChatCompletionRequest, max_history: int) -> ChatInputs:
    """Split chat messages into question, session context and history."""
    context: list[str] = []
    turns: list[Message] = []
    for index, message in enumerate(request.messages):
        text = _text(message, index)
        if message.role in _SYSTEM_ROLES:
            context.append(text)
        elif message.role in {"user", "assistant"}:
            turns.append(Message(role=message.role, content=text))
        else:
            raise InvalidChatRequest(
                f"messages[{index}] has role {message.role!r}; tool and function messages are not supported",
                f"messages.{index}.role",
                "unsupported_role",
            )
    if not turns or turns[-1].role != "user":
        raise InvalidChatRequest("the last non-system message must have role 'user' (the question)", "messages")
    if not turns[-1].content.strip():
        raise InvalidChatRequest("the question (last user message) is empty", "messages")
    history = tuple(turns[:-1])
    if len(history) > max_history:
        raise InvalidChatRequest(
            f"{len(history)} history messages, over the limit of {max_history} (server.max_history_messages); "
            "drop older turns",
            "messages",
            "history_too_long",
        )
    joined = "\n\n".join(part for part in context if part.strip())
    return ChatInputs(question=turns[-1].content, context=joined or None, history=history)


def generation_options(
    backend: BackendConfig,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | list[str] | None = None,
    seed: int | None = None,
) -> GenerationOptions:
    """Request options over the backend's configured defaults."""
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    return GenerationOptions(
        max_tokens=max_tokens or backend.max_output_tokens,
        temperature=backend.temperature if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        stop=stops,
        seed=seed,
    )


def completion_usage(usage: CacheUsage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
    )


def jsonable(value: Any) -> Any:
    """Sources and other facade values as plain JSON."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def ragcache_info(corpus: str, fingerprint: str, backend: str, answer: Answer) -> RagcacheInfo:
    """The ``ragcache`` object: what the cache did for this answer, and what it cost and saved."""
    usage = answer.usage
    return RagcacheInfo(
        corpus=corpus,
        fingerprint=fingerprint,
        backend=backend,
        route=answer.route.to_dict() if answer.route is not None else {},
        sources=jsonable(list(answer.sources)),
        cost_usd=answer.cost_usd,
        saved_usd=answer.saved_usd,
        cache_write_tokens=usage.cache_write_tokens,
        cached_ratio=round(usage.cached_ratio, 4),
        ttft_s=round(answer.ttft_s, 4),
        latency_s=round(answer.latency_s, 4),
        conversation=answer.turn.to_dict() if answer.turn is not None else None,
    )


def finish_reason(answer: Answer) -> str:
    reason = answer.finish_reason or "stop"
    return "length" if reason in {"length", "max_tokens"} else reason


def completion(ids: CompletionIds, answer: Answer, info: RagcacheInfo) -> ChatCompletion:
    """A whole (non-streamed) chat completion."""
    return ChatCompletion(
        id=ids.id,
        created=ids.created,
        model=ids.model,
        system_fingerprint=ids.fingerprint,
        choices=[
            ChatChoice(message={"role": "assistant", "content": answer.text}, finish_reason=finish_reason(answer))
        ],
        usage=completion_usage(answer.usage),
        ragcache=info,
    )


def completion_chunk(
    ids: CompletionIds,
    *,
    content: str | None = None,
    role: bool = False,
    finish: str | None = None,
    usage: CompletionUsage | None = None,
    info: RagcacheInfo | None = None,
    empty: bool = False,
) -> ChatCompletionChunk:
    """One chunk of a streamed completion (``empty``: no choices, as OpenAI's final usage chunk)."""
    choices = (
        []
        if empty
        else [ChunkChoice(delta=ChunkDelta(role="assistant" if role else None, content=content), finish_reason=finish)]
    )
    return ChatCompletionChunk(
        id=ids.id,
        created=ids.created,
        model=ids.model,
        system_fingerprint=ids.fingerprint,
        choices=choices,
        usage=usage,
        ragcache=info,
    )
