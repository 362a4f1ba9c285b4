"""scripts/make_squad_corpus.py on a small file shaped like SQuAD 2.0 (two articles).

Checked: one document per paragraph and one category per article (read back by the
corpus spec loader), the QA rows (unanswerable questions left out, the per-article
cap, gold = the paragraph), byte-identical output from two runs, and the refusals.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_module import load_script

from ragcache.corpus.spec import load_spec
from ragcache.router.evaluate import load_qa

make = load_script("make_squad_corpus")


def qa(qid: str, question: str, answer: str | None) -> dict:
    answers = [{"text": answer, "answer_start": 0}] if answer else []
    return {"id": qid, "question": question, "answers": answers, "is_impossible": answer is None}


SOURCE = {
    "version": "v2.0",
    "data": [
        {
            "title": "Steam_engine",
            "paragraphs": [
                {"context": "A steam engine does work using steam.", "qas": [qa("a1", " What uses steam? ", "engine")]},
                {
                    "context": "Watt improved it.",
                    "qas": [qa("a2", "Who improved it?", None), qa("a3", "Whom?", "Watt")],
                },
            ],
        },
        {
            "title": "Oxygen",
            "paragraphs": [
                {"context": "Oxygen is element 8.", "qas": [qa("b1", "Which number?", "8"), qa("b2", "Symbol?", "O")]}
            ],
        },
    ],
}


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_corpus_and_questions(tmp_path: Path) -> None:
    source = tmp_path / "squad.json"
    source.write_text(json.dumps(SOURCE), encoding="utf-8")
    for out in ("a", "b"):
        assert make.main(["--source", str(source), "--out", str(tmp_path / out), "--per-article", "1"]) == 0
    corpus = tmp_path / "a" / "squad"
    assert files(corpus) == files(tmp_path / "b" / "squad")
    assert sorted(files(corpus)) == [
        "corpus.yaml", "docs/oxygen/000.md", "docs/steam-engine/000.md", "docs/steam-engine/001.md", "qa.jsonl",
    ]  # fmt: skip
    assert (corpus / "docs" / "steam-engine" / "001.md").read_text(encoding="utf-8") == (
        "# Steam engine (2)\n\nWatt improved it.\n"
    )
    spec = load_spec(corpus)
    assert [c.id for c in spec.categories] == ["steam-engine", "oxygen"]
    rows = load_qa(corpus / "qa.jsonl")
    assert [(r.question, r.gold) for r in rows] == [
        ("What uses steam?", ("steam-engine/000.md",)),
        ("Which number?", ("oxygen/000.md",)),
    ]
    make.main(["--source", str(source), "--out", str(tmp_path / "a")])  # the default cap keeps all four answerable
    assert [r.id for r in load_qa(corpus / "qa.jsonl")] == ["a1", "a3", "b1", "b2"]


def test_refusals(tmp_path: Path) -> None:
    source = tmp_path / "squad.json"
    source.write_text(json.dumps({"questions": []}), encoding="utf-8")
    with pytest.raises(SystemExit, match="not a SQuAD file"):
        make.main(["--source", str(source), "--out", str(tmp_path)])
    source.write_text(json.dumps(SOURCE), encoding="utf-8")
    (tmp_path / "squad").mkdir()
    (tmp_path / "squad" / "corpus.yaml").write_text("name: mine\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="is not a generated squad corpus"):
        make.main(["--source", str(source), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--per-article"):
        make.main(["--source", str(source), "--out", str(tmp_path), "--per-article", "0"])
