"""Content addressing: the one place that turns bytes into names.

Never use Python's ``hash()`` for anything that leaves the process: it is
salted per process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

__all__ = ["canonical_json", "chain_hash", "content_hash"]


def content_hash(data: bytes | str) -> str:
    """SHA-256 hex digest of ``data`` (str is encoded as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def chain_hash(hashes: Iterable[str]) -> str:
    """Hash of an ordered sequence of hashes (corpus fingerprint, prefix keys)."""
    return content_hash("\n".join(hashes))


def canonical_json(value: Any, *, indent: int | None = None) -> str:
    """JSON with sorted keys and fixed separators: same value, same bytes."""
    separators = (",", ": ") if indent is not None else (",", ":")
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=indent, separators=separators)
