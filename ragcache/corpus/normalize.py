"""Text normalization: the same document always becomes the same bytes.

docs/architecture.md, invariant 1: Unicode NFC, ``\\r\\n``/``\\r`` → ``\\n``, trailing
whitespace stripped from every line, runs of blank lines collapsed to one,
no leading or trailing blank lines, exactly one final newline (an empty or
all-blank text becomes ``""``). A byte-order mark is dropped.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text"]

_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """Return ``text`` in ragcache's canonical form (idempotent)."""
    text = unicodedata.normalize("NFC", text).replace("\ufeff", "")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")
    text = _BLANK_RUNS.sub("\n\n", text)
    return text + "\n" if text else ""
