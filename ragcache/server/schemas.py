"""Request and response schemas of the REST endpoint, one per use.

The ``/v1/chat/completions`` and ``/v1/models`` shapes follow the OpenAI API so
any OpenAI client (the official SDKs, chat front ends) can talk to ragcache;
unknown OpenAI parameters (``presence_penalty``, ``logprobs`` …) are accepted
and ignored so front ends that always send them keep working. Everything
ragcache adds rides in one extra ``ragcache`` object. The native ``/v1/ask``
schemas forbid unknown keys. Every text field a caller sends is checked by
``ragcache/text.py`` (no lone surrogates, no NUL): a 400 ``invalid_text`` naming
the field, whatever the backend, instead of a 500 from deep in a tokenizer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ragcache.text import text_problem

__all__ = [
    "AskRequest",
    "AskResponse",
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessageIn",
    "ChunkChoice",
    "ChunkDelta",
    "CompletionUsage",
    "ContentPart",
    "CorpusList",
    "CorpusSummary",
    "ErrorBody",
    "ErrorResponse",
    "ModelCard",
    "ModelList",
    "RagcacheInfo",
    "ReloadReply",
]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _checked_text(cls: type, value: Any) -> Any:
    """Every string in a field's value (each item of a list too) must be text ragcache accepts.

    Run before pydantic's own checks: a constrained ``str`` (``min_length``) refuses a lone
    surrogate itself, with a message ("unable to parse raw data") that does not say why.
    """
    items = value if isinstance(value, list) else [value]
    for n, item in enumerate(items):
        text = item.get("text") if isinstance(item, dict) else item  # a content part, before parsing
        problem = text_problem(text) if isinstance(text, str) else None
        if problem is not None:
            where = "" if not isinstance(value, list) else f"part {n}'s text " if text is not item else f"item {n} "
            raise PydanticCustomError("invalid_text", where + problem)  # the field is the error's loc
    return value


# --- OpenAI chat completions: request --------------------------------------


class ContentPart(_Lenient):
    """One part of a multi-part message; only ``text`` parts are supported."""

    type: str
    text: str | None = None


class ChatMessageIn(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    check_text = field_validator("content", "name", mode="before")(_checked_text)


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    """``model`` names a corpus; system messages become session context after it."""

    model: str = Field(min_length=1)
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="only one choice per request is supported")

    check_text = field_validator("model", "stop", mode="before")(_checked_text)


# --- OpenAI chat completions: response -------------------------------------


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class RagcacheInfo(BaseModel):
    """What the cache did for this answer (docs/architecture.md, invariant 5)."""

    corpus: str
    fingerprint: str
    backend: str
    route: dict[str, Any]
    sources: list[Any]
    cost_usd: float | None
    saved_usd: float | None
    cache_write_tokens: int
    cached_ratio: float
    ttft_s: float
    latency_s: float
    conversation: dict[str, Any] | None = None  # the turn: number, history tokens, tail budget, compaction


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: CompletionUsage
    ragcache: RagcacheInfo


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    ragcache: RagcacheInfo | None = None


# --- models and corpora -----------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "ragcache"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class CorpusSummary(BaseModel):
    """A compiled corpus as the manifest describes it."""

    name: str
    title: str
    fingerprint: str
    tokenizer: str
    tokens: int
    documents: int
    chunks: int
    categories: list[dict[str, Any]]
    blocks: list[dict[str, Any]]
    prefixes: list[dict[str, Any]] = Field(default_factory=list)
    ready: bool


class CorpusList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CorpusSummary]


class ReloadReply(BaseModel):
    """``POST /admin/reload``: per corpus, ``reloaded`` / ``unchanged`` / ``failed``, the fingerprint
    served now and the one before."""

    object: Literal["list"] = "list"
    data: list[dict[str, str]]


# --- native ask -------------------------------------------------------------


class AskRequest(_Strict):
    """One question; ``session_id`` continues a conversation the server keeps (in this worker, or in
    ``conversation.store`` for all workers): ``new_session`` creates it, an unknown id is a 404."""

    question: str = Field(min_length=1)
    session_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    new_session: bool = False
    corpus: str | None = None
    context: str | None = None
    max_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0.0, le=2.0)

    check_text = field_validator("question", "corpus", "context", mode="before")(_checked_text)


class AskResponse(BaseModel):
    answer: str
    corpus: str
    model: str
    session_id: str | None
    route: dict[str, Any]
    sources: list[Any]
    usage: dict[str, int]
    cost_usd: float | None
    saved_usd: float | None
    ttft_s: float
    latency_s: float
    conversation: dict[str, Any] | None = None


# --- errors (the OpenAI error shape) ----------------------------------------


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
