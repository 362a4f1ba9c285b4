"""Prompts ordered from stable to volatile (docs/architecture.md, invariant 3).

A prompt is the stable prefix (instructions, corpus blocks, tools, examples —
each may end in a cache breakpoint), then the volatile tail: session context,
history exactly as it was sent, per-question snippets and the question.
Rendering keeps the stable prefix byte-identical whatever comes after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from ragcache.hashing import chain_hash, content_hash

__all__ = [
    "EXAMPLES_BLOCK",
    "INSTRUCTIONS_BLOCK",
    "NON_CORPUS_BLOCKS",
    "STABLE_KINDS",
    "TOOLS_BLOCK",
    "Message",
    "Prompt",
    "Route",
    "RouteMode",
    "RouteTokens",
    "Segment",
    "SegmentKind",
    "Snippet",
    "assemble_prompt",
    "estimate_margin",
    "render_snippets",
    "render_user_turn",
    "warm_prompt",
]

Role = Literal["system", "user", "assistant"]


def estimate_margin(window: int) -> int:
    """Tokens a prompt leaves unused so that estimates (a vendor's tokenizer, chat templates) never
    overflow a ``window``-token context: 1% of it plus a fixed few."""
    return window // 100 + 32


# Ids of the compiled corpus's non-corpus blocks (every other block id is corpus content).
INSTRUCTIONS_BLOCK = "instructions"
TOOLS_BLOCK = "tools"
EXAMPLES_BLOCK = "examples"
NON_CORPUS_BLOCKS = (INSTRUCTIONS_BLOCK, TOOLS_BLOCK, EXAMPLES_BLOCK)

RouteMode = Literal["full", "blocks", "topk"]


@dataclass(frozen=True)
class Snippet:
    """A chunk placed after the stable prefix, in the volatile tail."""

    chunk_id: str
    doc_id: str
    text: str
    score: float = 0.0
    tokens: int = 0


@dataclass(frozen=True)
class RouteTokens:
    """Corpus tokens a route puts in the prompt: the stable prefix's blocks and the volatile tail."""

    stable: int = 0
    tail: int = 0

    @property
    def total(self) -> int:
        return self.stable + self.tail


@dataclass(frozen=True)
class Route:
    """Which stable blocks a question is answered from, what else goes in the tail, and why.

    ``mode``: ``full`` (the whole corpus), ``blocks`` (a run of blocks, plus a tail)
    or ``topk`` (no corpus prefix, only retrieved chunks). ``block_ids`` are corpus
    block ids in corpus order; the prefix they form is one of the router's
    enumerable prefixes (invariant 4). ``documents`` lists every document in the
    prompt (blocks, then tail).
    """

    mode: RouteMode
    block_ids: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)
    margin: float | None = None
    sticky: bool = False
    snippets: tuple[Snippet, ...] = ()
    reason: str = ""
    documents: tuple[str, ...] = ()
    tokens: RouteTokens = field(default_factory=RouteTokens)
    # What the router assumed its stable tokens cost, per token relative to an uncached one:
    # ``price`` (the amortized price it chose by), ``charge`` (what this request pays on the cache
    # state it observed), ``warm`` (1.0/0.0); empty where it routed without a clock (router v4).
    pricing: dict[str, float] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "blocks": list(self.block_ids),
            "scores": {k: round(v, 4) for k, v in sorted(self.scores.items())},
            "margin": None if self.margin is None else round(self.margin, 4),
            "sticky": self.sticky,
            "snippets": [
                {"chunk_id": s.chunk_id, "doc_id": s.doc_id, "score": round(s.score, 4), "tokens": s.tokens}
                for s in self.snippets
            ],
            "reason": self.reason,
            "documents": list(self.documents),
            "tokens": {"stable": self.tokens.stable, "tail": self.tokens.tail},
        }


class SegmentKind(StrEnum):
    INSTRUCTIONS = "instructions"
    CORPUS = "corpus"
    TOOLS = "tools"
    EXAMPLES = "examples"
    CONTEXT = "context"
    SNIPPETS = "snippets"
    QUESTION = "question"


STABLE_KINDS = frozenset({SegmentKind.INSTRUCTIONS, SegmentKind.CORPUS, SegmentKind.TOOLS, SegmentKind.EXAMPLES})


@dataclass(frozen=True)
class Segment:
    """A piece of the stable prefix; ``breakpoint`` marks a cache breakpoint after it."""

    kind: SegmentKind
    text: str
    block_id: str | None = None
    breakpoint: bool = True

    @property
    def sha256(self) -> str:
        return content_hash(self.text)


@dataclass(frozen=True)
class Message:
    """One chat turn, kept exactly as it was sent so the next turn reuses its KV."""

    role: Role
    content: str


@dataclass(frozen=True)
class Prompt:
    """Stable segments, then session context, history and the final user turn."""

    stable: tuple[Segment, ...]
    question: str
    context: str | None = None
    history: tuple[Message, ...] = ()
    snippets: tuple[Snippet, ...] = ()
    route: Route | None = field(default=None, compare=False)
    conversation_id: str | None = field(default=None, compare=False)  # a conversation's name for its whole life
    # Explicit-breakpoint backends: write the final user turn to the cache (None: when there is history).
    cache_turn: bool | None = field(default=None, compare=False)

    @property
    def system_text(self) -> str:
        """The stable prefix as one system message (segments joined by a blank line)."""
        return "\n\n".join(segment.text.rstrip("\n") for segment in self.stable) + "\n"

    @property
    def prefix_fingerprint(self) -> str:
        """Hash of the stable segments in order: equal fingerprints, equal prefixes."""
        return chain_hash(segment.sha256 for segment in self.stable)

    @property
    def user_text(self) -> str:
        """The final user turn: snippets (if any), then the question."""
        return render_user_turn(self.snippets, self.question)

    def messages(self) -> list[dict[str, str]]:
        """Chat messages in stable→volatile order (OpenAI / ChatML shape)."""
        out = [{"role": "system", "content": self.system_text}]
        if self.context:
            out.append({"role": "system", "content": self.context})
        out.extend({"role": m.role, "content": m.content} for m in self.history)
        out.append({"role": "user", "content": self.user_text})
        return out

    def prefix_messages(self) -> list[dict[str, str]]:
        """Just the stable prefix as messages: what a warm-up sends."""
        return [{"role": "system", "content": self.system_text}]


def render_snippets(snippets: tuple[Snippet, ...]) -> str:
    """Per-question excerpts, each tagged with its document id so answers can cite it."""
    lines = ["Additional excerpts that may help:"]
    for snippet in snippets:
        lines.append(f"[{snippet.doc_id}]\n{snippet.text.strip()}")
    return "\n\n".join(lines)


def render_user_turn(snippets: tuple[Snippet, ...], question: str) -> str:
    """A user turn as sent: its excerpts (if any), then the question; a conversation's
    history repeats exactly these bytes."""
    return f"{render_snippets(snippets)}\n\n{question}" if snippets else question


def assemble_prompt(
    stable: tuple[Segment, ...],
    question: str,
    *,
    route: Route | None = None,
    context: str | None = None,
    history: tuple[Message, ...] = (),
    conversation_id: str | None = None,
    cache_turn: bool | None = None,
) -> Prompt:
    """Build a prompt; snippets come from the route and go after the stable prefix."""
    for segment in stable:
        if segment.kind not in STABLE_KINDS:
            raise ValueError(f"segment kind {segment.kind.value!r} cannot be part of the stable prefix")
    snippets = route.snippets if route is not None else ()
    return Prompt(stable, question, context, history, snippets, route, conversation_id, cache_turn)


def warm_prompt(prompt: Prompt) -> Prompt:
    """The stable prefix alone with a one-word final turn: what a warm-up sends,
    so the prefix renders exactly as in real requests (context, history and
    snippets are dropped: they are not part of what is cached for everyone)."""
    return Prompt(stable=prompt.stable, question=".")
