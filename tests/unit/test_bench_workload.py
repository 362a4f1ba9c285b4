"""Workload format round-trip, clear errors, and seeded generators."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ragcache.bench.workload import (
    QAItem,
    WorkloadError,
    dump_workload,
    generate,
    load_qa,
    load_workload,
    parse_workload,
)

QA = [
    QAItem(f"question {cat} {i}?", (f"{cat}/doc{i}.md",), (f"answer {i}",), cat)
    for cat in ("alpha", "beta", "gamma", "delta")
    for i in range(5)
]


@pytest.mark.parametrize("kind", ["independent", "sessions", "skewed", "bursty"])
def test_generators_are_deterministic_and_round_trip(kind: str, tmp_path: Path) -> None:
    first = generate(kind, QA, 30, seed=7)
    assert first == generate(kind, QA, 30, seed=7)
    assert first != generate(kind, QA, 30, seed=8)
    assert len(first) == 30
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    dump_workload(first, a)
    dump_workload(generate(kind, QA, 30, seed=7), b)
    assert a.read_bytes() == b.read_bytes()
    assert load_workload(a) == first
    assert load_workload(a, limit=4) == first[:4]


def test_independent_uses_every_question_before_repeating() -> None:
    items = generate("independent", QA, len(QA), seed=1)
    assert sorted(i.question for i in items) == sorted(q.question for q in QA)
    assert all(i.turn == 0 for i in items)
    assert [i.arrival_s for i in items] == sorted(i.arrival_s for i in items)


def test_sessions_stay_on_one_category_with_consecutive_turns() -> None:
    items = generate("sessions", QA, 12, seed=3, turns=3)
    by_session: dict[str, list] = {}
    for item in items:
        by_session.setdefault(item.session, []).append(item)
    assert len(by_session) == 4
    for turns in by_session.values():
        assert [t.turn for t in turns] == [0, 1, 2]
        assert len({t.category for t in turns}) == 1


def test_skewed_concentrates_on_the_top_category() -> None:
    items = generate("skewed", QA, 400, seed=5, zipf_s=1.5)
    counts = Counter(i.category for i in items).most_common()
    assert counts[0][1] > 2 * counts[-1][1]


def test_bursty_gaps_exceed_the_ttl() -> None:
    items = generate("bursty", QA, 10, seed=2, burst=5, gap_s=900.0, interval_s=0.5)
    arrivals = [i.arrival_s for i in items]
    assert arrivals[:5] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert arrivals[5] - arrivals[4] > 600


def test_unknown_kind_and_empty_inputs() -> None:
    with pytest.raises(WorkloadError, match="valid kinds: independent"):
        generate("zipfian", QA, 3)
    with pytest.raises(WorkloadError, match="at least one"):
        generate("independent", QA, 0)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"session": "a", "turn": 0, "question": "q"}', "{not json"], r"w\.jsonl:2: invalid JSON"),
        (['{"session": "a", "turn": 0}'], r"w\.jsonl:1: question: Field required"),
        (['{"session": "a", "turn": 0, "question": "q", "colour": 1}'], r"w\.jsonl:1: colour: unknown field"),
        (['{"session": "a", "turn": 1, "question": "q"}'], r"w\.jsonl:1: session 'a' turn 1 out of order"),
        (
            [
                '{"session": "a", "turn": 0, "question": "q", "arrival_s": 5}',
                "",
                '{"session": "b", "turn": 0, "question": "q", "arrival_s": 1}',
            ],
            r"w\.jsonl:3: arrival_s 1.0 is earlier",
        ),
        (["[1, 2]"], r"w\.jsonl:1: expected a JSON object"),
        ([""], r"w\.jsonl: the workload has no requests"),
    ],
)
def test_bad_lines_name_file_and_line(lines: list[str], message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        parse_workload(lines, source="w.jsonl")


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="workload file not found"):
        load_workload(tmp_path / "nope.jsonl")


def test_load_qa_accepts_common_field_names(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    rows = [
        {"question": "How?", "gold_doc_ids": ["lang/select.md"], "answers": ["like this"]},
        {"query": "Why?", "doc_ids": ["pragma/fk.md"], "answer": "because", "category": "pragmas"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    qa = load_qa(path)
    assert qa[0] == QAItem("How?", ("lang/select.md",), ("like this",), "lang")
    assert qa[1] == QAItem("Why?", ("pragma/fk.md",), ("because",), "pragmas")
    path.write_text('{"gold_doc_ids": ["x"]}\n', encoding="utf-8")
    with pytest.raises(WorkloadError, match=r"qa\.jsonl:1: a QA line needs a non-empty 'question'"):
        load_qa(path)
