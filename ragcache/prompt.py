"""Prompts ordered from stable to volatile (DESIGN.md, invariant 3).

A prompt is the stable prefix (instructions, corpus blocks, tools, examples —
each may end in a cache breakpoint), then the volatile tail: session context,
history exactly as it was sent, per-question snippets and the question.
Rendering keeps the stable prefix byte-identical whatever comes after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from ragcache.hashing import chain_hash, content_hash
from ragcache.router.types import Route, Snippet

__all__ = [
    "STABLE_KINDS",
    "Message",
    "Prompt",
    "Segment",
    "SegmentKind",
    "assemble_prompt",
    "render_snippets",
]

Role = Literal["system", "user", "assistant"]


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
        parts = []
        if self.snippets:
            parts.append(render_snippets(self.snippets))
        parts.append(self.question)
        return "\n\n".join(parts)

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


def assemble_prompt(
    stable: tuple[Segment, ...],
    question: str,
    *,
    route: Route | None = None,
    context: str | None = None,
    history: tuple[Message, ...] = (),
) -> Prompt:
    """Build a prompt; snippets come from the route and go after the stable prefix."""
    for segment in stable:
        if segment.kind not in STABLE_KINDS:
            raise ValueError(f"segment kind {segment.kind.value!r} cannot be part of the stable prefix")
    snippets = route.snippets if route is not None else ()
    return Prompt(stable=stable, question=question, context=context, history=history, snippets=snippets, route=route)
