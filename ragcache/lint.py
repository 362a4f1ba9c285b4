"""Cache-breaking pattern detector for the stable part of a prompt.

A prompt cache only hits when the prefix is byte-identical. Content that is
different at every export or request — generated timestamps, UUIDs, request
ids, template placeholders for "now" — silently turns every request into a
miss; CRLF, trailing spaces and unsorted JSON keys make equal content differ in
bytes. Severity depends on where the text is:

* ``prompt``: a rendered stable prefix (what is sent): whitespace problems are
  errors too, since nothing normalizes it after this point.
* ``spec``: ``corpus.yaml`` (instructions, tools, examples): the build normalizes
  whitespace and sorts tool keys, so those are warnings; generated values are errors.
* ``document``: a corpus document is content; a date inside it is stable as long
  as the file does not change, so dates, UUIDs and ids are warnings to review,
  while a "generated on …" / "last modified …" stamp or a template placeholder
  for "now" is an error (it changes with every export).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = ["Finding", "FindingGroup", "group_findings", "has_errors", "lint_corpus", "lint_json_keys", "lint_text"]

Severity = Literal["error", "warning"]
Context = Literal["prompt", "spec", "document"]


@dataclass(frozen=True)
class Finding:
    """One problem at ``path:line``."""

    path: str
    line: int
    severity: Severity
    code: str
    message: str
    match: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message} [{self.code}]"

    @property
    def rule(self) -> str:
        """The message without the matched text (the same for every finding of one rule)."""
        suffix = f": {self.match!r}"
        return self.message[: -len(suffix)] if self.match and self.message.endswith(suffix) else self.message


@dataclass(frozen=True)
class FindingGroup:
    """The findings of one severity and code: a corpus with a date on every page reads as one line."""

    severity: Severity
    code: str
    rule: str
    findings: tuple[Finding, ...]

    @property
    def files(self) -> int:
        return len({f.path for f in self.findings})


def group_findings(findings: Iterable[Finding]) -> list[FindingGroup]:
    """Findings by (severity, code): errors first, then the largest groups; each group in file order."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.severity, finding.code), []).append(finding)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0] != "error", -len(item[1]), item[0][1]))
    return [FindingGroup(sev, code, found[0].rule, tuple(found)) for (sev, code), found in ordered]  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Rule:
    code: str
    pattern: re.Pattern[str]
    message: str
    document: Severity
    spec: Severity = "error"


_RULES = (
    _Rule(
        "generated-stamp",
        re.compile(
            r"(?i)\b(generated|built|rendered|exported|printed|last (?:updated|modified|built)|today is|current "
            r"(?:date|time))\b[^\n]{0,24}?(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|\d{1,2}:\d{2})"
        ),
        "a generated date/time stamp changes on every export",
        document="error",
    ),
    _Rule(
        "timestamp",
        re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?\b"),
        "timestamp: if it is generated, every build/request gets a different prefix",
        document="warning",
    ),
    _Rule(
        "date",
        re.compile(r"(?<![\d-])(?:19|20)\d{2}-[01]\d-[0-3]\d(?![\d:T])"),
        "date: make sure it is content, not a build or request date",
        document="warning",
        spec="warning",
    ),
    _Rule(
        "epoch",
        re.compile(r"(?<!\d)1[5-9]\d{8}(?:\d{3})?(?!\d)"),
        "looks like a Unix timestamp",
        document="warning",
        spec="warning",
    ),
    _Rule(
        "uuid",
        re.compile(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
        "UUID: ids that differ per request or export break the cached prefix",
        document="warning",
    ),
    _Rule(
        "request-id",
        re.compile(
            r"(?i)\b(?:request|req|trace|span|correlation|session)[-_ ]?id\b\s*[:=]\s*[\w-]{6,}"
            r"|\b(?:req|msg|chatcmpl)_[A-Za-z0-9]{12,}"
        ),
        "request/session id in the stable prefix",
        document="warning",
    ),
    _Rule(
        "dynamic-placeholder",
        re.compile(
            r"(?i)\{\{\s*(?:now|today|date|time|timestamp|uuid|request_id|user(?:_?name)?)\s*\}\}|\$\{?(?:DATE|NOW|TIMESTAMP)\b"
        ),
        "template placeholder for a per-request value",
        document="error",
    ),
)


def lint_text(text: str, path: str = "<prompt>", *, context: Context = "prompt") -> list[Finding]:
    """Findings for ``text`` (line numbers start at 1)."""
    findings: list[Finding] = []
    for number, line in enumerate(text.split("\n"), start=1):
        findings.extend(_line_findings(line, path, number, context))
    return findings


def _line_findings(line: str, path: str, number: int, context: Context) -> Iterable[Finding]:
    whitespace: Severity = "error" if context == "prompt" else "warning"
    if line.endswith("\r") or "\r" in line:
        yield Finding(path, number, whitespace, "crlf", "CR/CRLF line ending (the build normalizes to LF)")
    if line.rstrip("\r") != line.rstrip():
        yield Finding(path, number, whitespace, "trailing-space", "trailing whitespace")
    matched = set()
    for rule in _RULES:
        found = rule.pattern.search(line)
        if found is None or any(found.start() < end and start < found.end() for start, end in matched):
            continue
        matched.add(found.span())
        severity = rule.document if context == "document" else rule.spec
        yield Finding(path, number, severity, rule.code, f"{rule.message}: {found.group(0)!r}", found.group(0))


def lint_json_keys(value: Any, path: str = "<tools>", *, line: int = 0, severity: Severity = "error") -> list[Finding]:
    """Objects whose keys are not sorted: JSON sent in another key order is different bytes."""
    findings = []
    stack = [("$", value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            keys = list(node)
            if keys != sorted(keys):
                findings.append(
                    Finding(path, line, severity, "unsorted-json-keys", f"keys of {where} are not sorted: {keys}")
                )
            stack.extend((f"{where}.{k}", v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(node))))
    return findings


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def lint_corpus(corpus_dir: str | Path) -> list[Finding]:
    """Lint ``corpus.yaml`` and every document of a corpus (raw files, so line numbers are the file's)."""
    from ragcache.corpus.sources import discover, read_document
    from ragcache.corpus.spec import SPEC_FILE, load_spec

    corpus_dir = Path(corpus_dir)
    spec = load_spec(corpus_dir)
    spec_path = corpus_dir / SPEC_FILE
    raw = spec_path.read_text(encoding="utf-8")
    findings = lint_text(raw, str(spec_path), context="spec")
    findings += _lint_tools(raw, str(spec_path))
    for source in discover(corpus_dir, spec):
        findings += _lint_document(source, read_document)
    return findings


def _lint_document(source: Any, read_document: Any) -> list[Finding]:
    """Lint what reaches the blocks; report lines of the file itself."""
    try:
        raw = source.path.read_bytes().decode("utf-8") if source.path.suffix.lower() != ".pdf" else ""
    except UnicodeDecodeError as exc:
        return [Finding(str(source.path), 1, "error", "invalid-utf8", f"not valid UTF-8: {exc.reason}")]
    if source.path.suffix.lower() in {".md", ".markdown", ".txt"}:
        return lint_text(raw, str(source.path), context="document")
    # HTML/JSON/PDF are re-rendered by their reader: lint the extracted text (whitespace does not survive it)
    # and point at the raw line where the matched value appears.
    found = lint_text(read_document(source).text, str(source.path), context="document")
    out: dict[tuple[int, str, str], Finding] = {}
    for finding in found:
        if finding.code in {"crlf", "trailing-space"}:
            continue
        at = raw.find(finding.match[-10:]) if raw and finding.match else -1
        line = raw.count("\n", 0, at) + 1 if at >= 0 else finding.line
        out.setdefault(
            (line, finding.code, finding.match),
            Finding(finding.path, line, finding.severity, finding.code, finding.message, finding.match),
        )
    return list(out.values())


def _lint_tools(raw: str, path: str) -> list[Finding]:
    """Tool schemas with unsorted keys, at their line in corpus.yaml (the build sorts them: a warning)."""
    root = yaml.compose(raw)
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, node in root.value:
        if key.value == "tools" and isinstance(node, yaml.SequenceNode):
            findings = []
            for item in node.value:
                value = yaml.safe_load(yaml.serialize(item))
                findings += lint_json_keys(value, path, line=item.start_mark.line + 1, severity="warning")
            return findings
    return []
