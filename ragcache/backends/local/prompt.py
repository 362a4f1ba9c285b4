"""Prompt → token ids for the local engine, cut into cacheable blocks.

The chat template renders ``Prompt.messages()``; every message boundary where
the rendering of the first k messages is a prefix of the whole rendering is a
block boundary. Each block is tokenized on its own and the ids concatenated,
so the ids of the stable prefix are a prefix of every prompt's ids by
construction, whatever comes after (for ChatML the split falls on special
tokens, so this equals tokenizing the whole text; tests check it). Block keys
chain the model's fingerprint and the blocks' token ids (ragcache.hashing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ragcache.hashing import chain_hash, content_hash
from ragcache.prompt import Prompt
from ragcache.text import check_text

__all__ = ["BlockSpan", "EncodedPrompt", "PromptEncoder", "token_hash"]


@dataclass(frozen=True)
class BlockSpan:
    """Tokens ``[start, end)`` of a prompt: one cacheable block named ``key``."""

    key: str
    start: int
    end: int
    stable: bool


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt's token ids; ``blocks`` cover a prefix of them (the tail after the last one is never cached)."""

    ids: list[int]
    blocks: tuple[BlockSpan, ...]
    text: str

    @property
    def length(self) -> int:
        return len(self.ids)

    @property
    def block_keys(self) -> list[str]:
        return [block.key for block in self.blocks]

    @property
    def stable_tokens(self) -> int:
        return sum(b.end - b.start for b in self.blocks if b.stable)

    def stable_only(self) -> EncodedPrompt:
        """Just the stable prefix (what a warm-up computes)."""
        blocks = tuple(b for b in self.blocks if b.stable)
        end = blocks[-1].end if blocks else 0
        return EncodedPrompt(self.ids[:end], blocks, "")


def token_hash(ids: list[int]) -> str:
    """The name of a run of token ids (int32 little-endian bytes, so any machine agrees)."""
    return content_hash(np.asarray(ids, dtype="<i4").tobytes())


class PromptEncoder:
    """Renders prompts with the tokenizer's chat template and splits them into blocks."""

    def __init__(self, tokenizer: Any, fingerprint: str, *, memo: int = 64) -> None:
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self._tokenize = lru_cache(maxsize=memo)(self._tokenize_uncached)  # the stable prefix repeats

    def render(self, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def encode(self, prompt: Prompt) -> EncodedPrompt:
        """Token ids of the whole prompt (with the assistant header) and its block spans."""
        messages = prompt.messages()
        # The caller's text (message 0 is the compiled corpus), checked before the tokenizer (its TypeError named
        # nothing).
        for index, message in enumerate(messages[1:], 1):
            check_text(message["content"], f"the prompt's message {index} ({message['role']})")
        full = self.render(messages, generation_prompt=True)
        cuts: list[tuple[int, int]] = []  # (messages rendered, end offset in ``full``)
        for k in range(1, len(messages) + 1):
            head = self.render(messages[:k], generation_prompt=False)
            if full.startswith(head) and (not cuts or len(head) > cuts[-1][1]):
                cuts.append((k, len(head)))
        ids: list[int] = []
        blocks: list[BlockSpan] = []
        key, begin = self.fingerprint, 0
        for k, end in cuts:
            part = self._tokenize(full[begin:end])
            key = chain_hash([key, token_hash(list(part))])
            blocks.append(BlockSpan(key, len(ids), len(ids) + len(part), stable=k == 1))  # message 1: the system
            ids.extend(part)
            begin = end
        if begin < len(full):
            ids.extend(self._tokenize(full[begin:]))
        return EncodedPrompt(ids, tuple(b for b in blocks if b.end > b.start), full)

    def _tokenize_uncached(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
