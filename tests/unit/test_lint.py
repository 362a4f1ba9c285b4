"""Cache-breaking pattern detector: prompts, corpus.yaml and documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcache.lint import has_errors, lint_corpus, lint_json_keys, lint_text


def codes(findings) -> list[str]:
    return [f.code for f in findings]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("Generated on 2024-05-01 by the exporter", "generated-stamp"),
        ("This page last modified on 2022-10-26 20:02:18 UTC", "generated-stamp"),
        ("Today is 3/14/2025.", "generated-stamp"),
        ("at 2024-05-01T12:30:00Z the job ran", "timestamp"),
        ("trace 123e4567-e89b-12d3-a456-426614174000", "uuid"),
        ("request_id: 9f8e7d6c5b4a", "request-id"),
        ("Hello {{ now }}, welcome", "dynamic-placeholder"),
        ("built at ${DATE}", "dynamic-placeholder"),
        ("epoch 1714567890 seconds", "epoch"),
        ("released 2021-11-27", "date"),
    ],
)
def test_patterns_found_in_a_prompt(line: str, code: str) -> None:
    findings = lint_text(f"stable text\n{line}\n", "<prompt>")
    assert code in codes(findings)
    assert all(f.line == 2 for f in findings)


def test_clean_prompt_has_no_findings() -> None:
    text = "You answer questions about SQLite version 3.40.1.\nCite pages like [doc: c3ref/open.html].\n"
    assert lint_text(text) == []


def test_whitespace_is_an_error_in_prompts_but_a_warning_in_sources() -> None:
    text = "one  \r\ntwo\n"
    prompt = lint_text(text, context="prompt")
    assert {(f.code, f.severity) for f in prompt} == {("crlf", "error"), ("trailing-space", "error")}
    spec = lint_text(text, "corpus.yaml", context="spec")
    assert {f.severity for f in spec} == {"warning"} and not has_errors(spec)


def test_content_dates_and_ids_in_documents_are_warnings_but_stamps_are_errors() -> None:
    doc = "Since version 3.37.0 (2021-11-27) STRICT tables exist.\nExample id 123e4567-e89b-12d3-a456-426614174000\n"
    assert not has_errors(lint_text(doc, "doc.md", context="document"))
    stamped = "Last updated: 2024-06-01 09:00\n"
    assert has_errors(lint_text(stamped, "doc.md", context="document"))


def test_json_key_order() -> None:
    tools = [{"type": "function", "function": {"parameters": {}, "name": "x"}}]
    findings = lint_json_keys(tools, "tools.json")
    assert [f.message.split(" are")[0] for f in findings] == ["keys of $[0]", "keys of $[0].function"]
    assert lint_json_keys([{"function": {"name": "x", "parameters": {}}, "type": "function"}]) == []


def test_lint_corpus_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "corpus.yaml").write_text(
        "name: t\ninstructions: |\n  Be helpful. Session id: abcdef123456\n"
        "tools:\n  - {type: function, function: {name: f}}\n",
        encoding="utf-8",
    )
    docs = tmp_path / "docs" / "a"
    docs.mkdir(parents=True)
    (docs / "ok.md").write_text("# Fine\n\nNothing dynamic here.\n")
    (docs / "stamp.md").write_text("# Export\n\nintro\nGenerated on 2024-01-02 10:11\n")
    (docs / "crlf.txt").write_bytes(b"windows\r\nline  \n")
    page = "<html><body>\n<p>Body</p>\n<p>last modified <a href='x'>2023-01-01 10:00:00</a></p>\n</body></html>"
    (docs / "page.html").write_text(page)
    findings = lint_corpus(tmp_path)
    where = {(Path(f.path).name, f.line, f.code, f.severity) for f in findings}
    assert ("corpus.yaml", 3, "request-id", "error") in where
    assert ("corpus.yaml", 5, "unsorted-json-keys", "warning") in where
    assert ("stamp.md", 4, "generated-stamp", "error") in where
    assert ("crlf.txt", 1, "crlf", "warning") in where
    assert ("crlf.txt", 2, "trailing-space", "warning") in where
    assert ("page.html", 3, "generated-stamp", "error") in where
    assert not any(Path(f.path).name == "ok.md" for f in findings)
    assert has_errors(findings)


def test_sample_corpora_lint_without_errors() -> None:
    root = Path(__file__).resolve().parents[2] / "corpora"
    for name in ("small", "sqlite"):
        assert not has_errors(lint_corpus(root / name)), name
