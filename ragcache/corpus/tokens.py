"""Token counting with the configured tokenizer, loaded once per process.

``smollm2`` (the default) is the local model's own tokenizer, so block sizes are
exact for the embedded backend; ``hf:<folder>`` loads any Hugging Face
``tokenizer.json``; ``chars`` is a 4-characters-per-token estimate and is marked
as such in the manifest. Nothing here downloads anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragcache.config import DEFAULT_MODEL
from ragcache.errors import ConfigError, ModelError
from ragcache.hashing import content_hash

if TYPE_CHECKING:
    from ragcache.models import Progress

__all__ = ["Tokenizer", "get_tokenizer"]

_CHARS_PER_TOKEN = 4


@dataclass(frozen=True, eq=False)
class Tokenizer:
    """Counts and encodes text; ``name`` and ``sha256`` identify it in build settings."""

    name: str
    sha256: str
    estimated: bool
    _backend: Any = None

    def encode(self, text: str) -> list[int]:
        """Token ids without special tokens (a list of zeros for the ``chars`` estimate)."""
        if self._backend is None:
            return [0] * math.ceil(len(text) / _CHARS_PER_TOKEN)
        return self._backend.encode(text, add_special_tokens=False).ids

    def count(self, text: str) -> int:
        """Number of tokens in ``text``; repeated texts are answered from a cache."""
        return _count(self, text)

    def count_many(self, texts: list[str]) -> list[int]:
        """Counts for many texts at once (batched in the Rust tokenizer)."""
        if self._backend is None:
            return [math.ceil(len(t) / _CHARS_PER_TOKEN) for t in texts]
        return [len(e.ids) for e in self._backend.encode_batch(texts, add_special_tokens=False)]


@lru_cache(maxsize=4096)
def _count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text))


@lru_cache(maxsize=8)
def get_tokenizer(spec: str = DEFAULT_MODEL, progress: Progress | None = None) -> Tokenizer:
    """The tokenizer for a build setting: ``smollm2``, ``hf:<folder>`` or ``chars``.

    ``progress`` hears the one-time conversion of the default model, if it happens now.
    """
    if spec == "chars":
        return Tokenizer(name="chars", sha256=content_hash("chars/4"), estimated=True)
    if spec == DEFAULT_MODEL:
        from ragcache.models import ensure_model

        return _load_hf(ensure_model(progress=progress), name=DEFAULT_MODEL)
    if spec.startswith("hf:"):
        folder = Path(spec[3:]).expanduser()
        return _load_hf(folder, name=f"hf:{folder.name}")
    raise ConfigError(f"unknown tokenizer {spec!r}: use 'smollm2', 'hf:<folder with tokenizer.json>' or 'chars'")


def _load_hf(folder: Path, name: str) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    path = folder / "tokenizer.json"
    try:
        data = path.read_bytes()
        backend = HFTokenizer.from_str(data.decode("utf-8"))
    except Exception as exc:  # tokenizers raises plain Exception, OSError for the file
        raise ModelError(f"{path}: cannot load tokenizer: {exc}") from exc
    return Tokenizer(name=name, sha256=content_hash(data), estimated=False, _backend=backend)
