"""What text ragcache accepts from a caller (questions, messages, context), checked in one place.

Accepted: any Unicode string that encodes as UTF-8, tabs, newlines and other
control characters included (form feeds and escape codes occur in pasted logs
and documents; every tokenizer and vendor API takes them). Refused, with the
field named: a **lone surrogate** (U+D800–U+DFFF, e.g. JSON ``"\\ud800"``), which
no backend can encode (the local tokenizer raised a ``TypeError``, HTTP clients a
``UnicodeEncodeError``), and **NUL** (U+0000), which C-string layers (vLLM's
tokenizers, vendor gateways) cut or reject differently, so the same question
could be answered differently per backend. Both are refused rather than
replaced: a silently altered question would be answered as another question.
"""

from __future__ import annotations

import re

from ragcache.errors import InvalidTextError

__all__ = ["check_text", "text_problem"]

_BAD = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` is refused (None: it is accepted); the first bad character and its position."""
    bad = _BAD.search(text)
    if bad is None:
        return None
    char, at = bad.group(), bad.start()
    if char == "\x00":
        return f"holds a NUL character (U+0000) at character {at}; remove it"
    return (f"holds a lone surrogate (U+{ord(char):04X}) at character {at}, which is not valid Unicode "
            "text (no UTF-8 encoding); send the character itself or its surrogate pair")  # fmt: skip


def check_text(text: str, field: str) -> str:
    """``text`` unchanged if accepted, else :class:`InvalidTextError` naming ``field``."""
    problem = text_problem(text)
    if problem is not None:
        raise InvalidTextError(f"{field} {problem}", field=field)
    return text
