"""Normalization is what makes equal content equal bytes."""

from __future__ import annotations

import unicodedata

import pytest

from ragcache.corpus.normalize import normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\r\nb\rc", "a\nb\nc\n"),
        ("line  \t\nnext\t", "line\nnext\n"),
        ("a\n\n\n\n\nb", "a\n\nb\n"),
        ("\n\n  \nbody\n\n\n", "body\n"),
        ("no newline", "no newline\n"),
        ("", ""),
        ("   \n\t\n", ""),
        ("\ufeffbom", "bom\n"),
        ("  indented code\n    more", "  indented code\n    more\n"),
    ],
)
def test_normalize_cases(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_nfc_composes_decomposed_characters() -> None:
    decomposed = unicodedata.normalize("NFD", "café résumé")
    assert decomposed != "café résumé"
    assert normalize_text(decomposed) == "café résumé\n"


def test_idempotent() -> None:
    raw = "T\u0301itle  \r\n\r\n\r\n\r\nbody\t \rend"
    once = normalize_text(raw)
    assert normalize_text(once) == once
