"""corpus.yaml parsing: defaults, strictness, errors that name the key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcache.corpus.spec import BuildSettings, glob_match, load_spec
from ragcache.errors import CorpusError


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "corpus.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_minimal_spec_gets_defaults(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, "name: demo\n"))
    assert spec.name == "demo"
    assert spec.categories == ()
    assert spec.build == BuildSettings()
    assert spec.build.tokenizer == "smollm2"
    assert spec.build.max_block_tokens == 2048
    assert "**/*.md" in spec.include


def test_full_spec(tmp_path: Path) -> None:
    spec = load_spec(
        _write(
            tmp_path,
            """
name: demo
title: Demo
license: CC0-1.0
instructions: Be brief.
categories:
  - {id: api, title: API, globs: ["api/**"]}
  - {id: guide, globs: ["guide/*.md"]}
exclude: ["drafts/**"]
tools:
  - {type: function, function: {name: lookup, parameters: {type: object}}}
examples:
  - {question: "Q?", answer: "A."}
build: {tokenizer: chars, chunk_tokens: 128, chunk_overlap: 16, max_block_tokens: 2000, min_block_tokens: 0}
""",
        )
    )
    assert [c.id for c in spec.categories] == ["api", "guide"]
    assert spec.tools[0]["function"]["name"] == "lookup"
    assert spec.examples[0].answer == "A."
    assert spec.build.chunk_tokens == 128


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    _write(tmp_path, "name: demo\nbuild:\n  chunk_size: 10\n")
    with pytest.raises(CorpusError) as info:
        load_spec(tmp_path)
    assert "build.chunk_size: unknown key" in str(info.value)
    assert str(tmp_path / "corpus.yaml") in str(info.value)


def test_unknown_category_key(tmp_path: Path) -> None:
    _write(tmp_path, "name: demo\ncategories:\n  - {id: a, globs: ['a/**'], folder: a}\n")
    with pytest.raises(CorpusError, match=r"categories\.0\.folder: unknown key"):
        load_spec(tmp_path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: [unclosed\n", "invalid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("title: no name\n", "name: Field required"),
        ("name: d\ncategories:\n  - {id: a, globs: [x]}\n  - {id: a, globs: [y]}\n", "defined twice"),
        ("name: d\ncategories:\n  - {id: Bad Id, globs: [x]}\n", "lowercase"),
        ("name: d\ncategories:\n  - {id: a}\n", "has no globs"),
        ("name: d\nbuild: {chunk_tokens: 64, chunk_overlap: 64}\n", "chunk_overlap"),
    ],
)
def test_invalid_specs(tmp_path: Path, text: str, needle: str) -> None:
    _write(tmp_path, text)
    with pytest.raises(CorpusError, match=needle) as info:
        load_spec(tmp_path)
    assert "corpus.yaml" in str(info.value)


def test_missing_and_non_utf8_spec(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"corpus\.yaml: not found"):
        load_spec(tmp_path)
    (tmp_path / "corpus.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(CorpusError, match="not valid UTF-8"):
        load_spec(tmp_path)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("**/*.md", "a.md", True),
        ("**/*.md", "x/y/a.md", True),
        ("*.md", "x/a.md", False),
        ("api/**", "api/v1/x.html", True),
        ("api/**", "apix/a.md", False),
        ("lang*.html", "lang_select.html", True),
        ("c3ref/?pen.html", "c3ref/open.html", True),
    ],
)
def test_glob_match(pattern: str, path: str, matches: bool) -> None:
    assert glob_match(pattern, path) is matches
