"""``corpus.yaml``: what a corpus is made of and how it is built.

A corpus is a folder::

    corpus.yaml        this spec (every key optional except ``name``)
    docs/**            the documents (.md .txt .html .htm .json .pdf)

Unknown keys are errors that name the key and the file. Globs are relative to
``docs/`` and use ``*`` (no ``/``), ``?`` and ``**`` (any number of folders).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ragcache.config import DEFAULT_MODEL, format_validation_error
from ragcache.errors import CorpusError

__all__ = [
    "SPEC_FILE",
    "BuildSettings",
    "CategorySpec",
    "CorpusSpec",
    "ExampleSpec",
    "glob_match",
    "load_spec",
]

SPEC_FILE = "corpus.yaml"
DEFAULT_INSTRUCTIONS = (
    "Answer the user's question using only the documents below. "
    "Cite the documents you used by their id, e.g. [doc: guide/intro.md]. "
    "If the documents do not contain the answer, say so."
)
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategorySpec(_Strict):
    """A coarse topic; each category compiles into one block (or numbered parts)."""

    id: str
    title: str = ""
    globs: tuple[str, ...] = ()

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"category id {value!r} must be lowercase letters, digits, '_', '.', '-'")
        return value


class ExampleSpec(_Strict):
    """One few-shot example, rendered into the stable ``examples`` block."""

    question: str
    answer: str


class BuildSettings(_Strict):
    """How documents become blocks and chunks (all of it is recorded in the manifest)."""

    tokenizer: str = DEFAULT_MODEL
    chunk_tokens: int = Field(256, ge=16)
    chunk_overlap: int = Field(32, ge=0)
    full_budget_tokens: int = Field(6000, ge=0)
    max_block_tokens: int = Field(2048, ge=256)
    min_block_tokens: int = Field(256, ge=0)

    @model_validator(mode="after")
    def _check_sizes(self) -> BuildSettings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        if self.min_block_tokens > self.max_block_tokens:
            raise ValueError("min_block_tokens must not exceed max_block_tokens")
        return self


class CorpusSpec(_Strict):
    """The parsed ``corpus.yaml``."""

    name: str
    title: str = ""
    license: str = ""
    instructions: str = DEFAULT_INSTRUCTIONS
    categories: tuple[CategorySpec, ...] = ()
    include: tuple[str, ...] = ("**/*.md", "**/*.txt", "**/*.html", "**/*.htm", "**/*.json", "**/*.pdf")
    exclude: tuple[str, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()
    examples: tuple[ExampleSpec, ...] = ()
    build: BuildSettings = Field(default_factory=BuildSettings)

    @model_validator(mode="after")
    def _unique_categories(self) -> CorpusSpec:
        seen: set[str] = set()
        for category in self.categories:
            if category.id in seen:
                raise ValueError(f"category id {category.id!r} is defined twice")
            if not category.globs:
                raise ValueError(f"category {category.id!r} has no globs")
            seen.add(category.id)
        return self


def load_spec(corpus_dir: str | Path) -> CorpusSpec:
    """Read and validate ``<corpus_dir>/corpus.yaml``; errors name the file and the key."""
    path = Path(corpus_dir) / SPEC_FILE
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise CorpusError(f"{path}: not found; a corpus folder needs a {SPEC_FILE} (at least `name:`)") from exc
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise CorpusError(f"{path}: invalid YAML: {exc}") from exc
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return CorpusSpec.model_validate(data)
    except ValidationError as exc:
        raise CorpusError(format_validation_error(exc, str(path))) from exc


def glob_match(pattern: str, path: str) -> bool:
    """True when the posix ``path`` matches ``pattern`` (``**`` spans folders, ``*`` does not)."""
    return _glob_regex(pattern).fullmatch(path) is not None


@lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))
