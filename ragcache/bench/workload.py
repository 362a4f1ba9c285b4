"""Bench workloads: a JSONL request log and generators that make one from a QA set.

One request per line, in arrival order::

    {"arrival_s": 0.0, "category": "sql", "gold_answers": ["..."], "gold_doc_ids": ["sql/select.md"],
     "question": "...", "session": "s0000", "turn": 0}

``session`` and ``turn`` tie the turns of a conversation together (turn 0 starts
it; each later turn carries the earlier turns as history). ``arrival_s`` is the
offset from the start of the run. ``gold_doc_ids`` / ``gold_answers`` are
optional and feed evidence recall and answer quality. Lines are canonical JSON so
a generated workload is byte-identical for the same QA set, kind and seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragcache.errors import ConfigError
from ragcache.hashing import canonical_json

__all__ = [
    "GENERATORS",
    "QAItem",
    "WorkloadError",
    "WorkloadItem",
    "bursty",
    "dump_workload",
    "generate",
    "independent",
    "load_qa",
    "load_workload",
    "parse_workload",
    "sessions",
    "skewed",
]

GeneratorKind = Literal["independent", "sessions", "skewed", "bursty"]


class WorkloadError(ConfigError):
    """A workload or QA file that cannot be used; the message names file and line."""


@dataclass(frozen=True)
class QAItem:
    """One question of a QA set, with its gold evidence and answers when known."""

    question: str
    gold_doc_ids: tuple[str, ...] = ()
    gold_answers: tuple[str, ...] = ()
    category: str = ""


@dataclass(frozen=True)
class WorkloadItem:
    """One request to replay."""

    session: str
    turn: int
    question: str
    arrival_s: float = 0.0
    gold_doc_ids: tuple[str, ...] = ()
    gold_answers: tuple[str, ...] = ()
    category: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "turn": self.turn,
            "question": self.question,
            "arrival_s": self.arrival_s,
            "gold_doc_ids": list(self.gold_doc_ids),
            "gold_answers": list(self.gold_answers),
            "category": self.category,
        }


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session: str = Field(min_length=1)
    turn: int = Field(ge=0)
    question: str = Field(min_length=1)
    arrival_s: float = Field(0.0, ge=0.0)
    gold_doc_ids: list[str] = Field(default_factory=list)
    gold_answers: list[str] = Field(default_factory=list)
    category: str = ""


def _line_error(where: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(line)"
        problems.append(f"{loc}: {'unknown field' if err['type'] == 'extra_forbidden' else err['msg']}")
    return f"{where}: " + "; ".join(problems)


def _parse_line(raw: str, where: str) -> _Line:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise WorkloadError(f"{where}: expected a JSON object, got {type(data).__name__}")
    try:
        return _Line.model_validate(data)
    except ValidationError as exc:
        raise WorkloadError(_line_error(where, exc)) from None


def parse_workload(lines: Iterable[str], source: str = "<workload>") -> list[WorkloadItem]:
    """Parse JSONL lines; any bad line raises :class:`WorkloadError` naming its number."""
    items: list[WorkloadItem] = []
    next_turn: dict[str, int] = {}
    last_arrival = 0.0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{source}:{number}"
        line = _parse_line(raw, where)
        expected = next_turn.get(line.session, 0)
        if line.turn != expected:
            raise WorkloadError(
                f"{where}: session {line.session!r} turn {line.turn} out of order (expected {expected})"
            )
        if line.arrival_s < last_arrival:
            raise WorkloadError(f"{where}: arrival_s {line.arrival_s} is earlier than the line before ({last_arrival})")
        next_turn[line.session] = expected + 1
        last_arrival = line.arrival_s
        items.append(
            WorkloadItem(
                session=line.session,
                turn=line.turn,
                question=line.question,
                arrival_s=line.arrival_s,
                gold_doc_ids=tuple(line.gold_doc_ids),
                gold_answers=tuple(line.gold_answers),
                category=line.category,
            )
        )
    if not items:
        raise WorkloadError(f"{source}: the workload has no requests")
    return items


def load_workload(path: str | Path, limit: int | None = None) -> list[WorkloadItem]:
    """Read a workload file; ``limit`` keeps the first N requests."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkloadError(f"{path}: workload file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"{path}: cannot read workload: {exc}") from None
    items = parse_workload(text.splitlines(), source=str(path))
    return items[:limit] if limit is not None else items


def dump_workload(items: Sequence[WorkloadItem], path: str | Path) -> None:
    """Write ``items`` as canonical JSONL (atomically: never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(canonical_json(item.to_dict()) + "\n" for item in items), encoding="utf-8")
    tmp.replace(path)


# --- QA sets ------------------------------------------------------------------

_QUESTION_KEYS = ("question", "query", "q")
_DOC_KEYS = ("gold_doc_ids", "doc_ids", "gold_docs", "gold", "documents", "doc_id")
_ANSWER_KEYS = ("gold_answers", "answers", "answer")


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((data[k] for k in keys if k in data), None)


def _as_strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def load_qa(path: str | Path) -> list[QAItem]:
    """Read a QA set (JSONL: a question plus optional gold doc ids, answers, category)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"{path}: cannot read QA set: {exc}") from None
    items = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
        question = _first(data, _QUESTION_KEYS) if isinstance(data, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise WorkloadError(f"{path}:{number}: a QA line needs a non-empty 'question'")
        docs = _as_strings(_first(data, _DOC_KEYS))
        category = str(data.get("category") or (docs[0].split("/")[0] if docs and "/" in docs[0] else ""))
        items.append(QAItem(question.strip(), docs, _as_strings(_first(data, _ANSWER_KEYS)), category))
    if not items:
        raise WorkloadError(f"{path}: the QA set has no questions")
    return items


# --- generators -----------------------------------------------------------------


def _item(qa: QAItem, session: str, turn: int, arrival: float) -> WorkloadItem:
    return WorkloadItem(
        session=session,
        turn=turn,
        question=qa.question,
        arrival_s=round(arrival, 3),
        gold_doc_ids=qa.gold_doc_ids,
        gold_answers=qa.gold_answers,
        category=qa.category,
    )


def _by_category(qa: Sequence[QAItem]) -> dict[str, list[QAItem]]:
    groups: dict[str, list[QAItem]] = {}
    for item in qa:
        groups.setdefault(item.category, []).append(item)
    return dict(sorted(groups.items()))


def independent(qa: Sequence[QAItem], n: int, *, seed: int = 0, interval_s: float = 1.0) -> list[WorkloadItem]:
    """Single-turn questions in shuffled order (every question before any repeats),
    Poisson arrivals with mean gap ``interval_s``."""
    rng = random.Random(seed)
    out: list[WorkloadItem] = []
    order: list[QAItem] = []
    clock = 0.0
    for i in range(n):
        if not order:
            order = list(qa)
            rng.shuffle(order)
        out.append(_item(order.pop(), f"q{i:04d}", 0, clock))
        clock += rng.expovariate(1.0 / interval_s) if interval_s > 0 else 0.0
    return out


def sessions(
    qa: Sequence[QAItem], n: int, *, seed: int = 0, turns: int = 3, interval_s: float = 1.0
) -> list[WorkloadItem]:
    """Conversations of ``turns`` questions on one category each (follow-ups stay on
    topic); ``n`` requests in all, sessions run one after another."""
    rng = random.Random(seed)
    groups = _by_category(qa)
    names = list(groups)
    out: list[WorkloadItem] = []
    clock = 0.0
    session = 0
    while len(out) < n:
        pool = list(groups[rng.choice(names)])
        rng.shuffle(pool)
        for turn in range(min(turns, n - len(out))):
            out.append(_item(pool[turn % len(pool)], f"s{session:04d}", turn, clock))
            clock += rng.expovariate(1.0 / interval_s) if interval_s > 0 else 0.0
        session += 1
    return out


def skewed(
    qa: Sequence[QAItem], n: int, *, seed: int = 0, zipf_s: float = 1.2, interval_s: float = 1.0
) -> list[WorkloadItem]:
    """Single-turn questions whose categories follow a Zipf law (rank order seeded)."""
    rng = random.Random(seed)
    groups = _by_category(qa)
    names = list(groups)
    rng.shuffle(names)
    weights = [1.0 / (rank**zipf_s) for rank in range(1, len(names) + 1)]
    out: list[WorkloadItem] = []
    clock = 0.0
    for i in range(n):
        category = rng.choices(names, weights=weights)[0]
        out.append(_item(rng.choice(groups[category]), f"q{i:04d}", 0, clock))
        clock += rng.expovariate(1.0 / interval_s) if interval_s > 0 else 0.0
    return out


def bursty(
    qa: Sequence[QAItem], n: int, *, seed: int = 0, burst: int = 5, gap_s: float = 600.0, interval_s: float = 0.2
) -> list[WorkloadItem]:
    """Bursts of ``burst`` questions ``interval_s`` apart, separated by idle gaps of
    ``gap_s`` (make it longer than the cache TTL to exercise expiry and refresh)."""
    base = independent(qa, n, seed=seed, interval_s=0.0)
    return [
        replace(item, arrival_s=round((i // burst) * gap_s + (i % burst) * interval_s, 3))
        for i, item in enumerate(base)
    ]


GENERATORS = {"independent": independent, "sessions": sessions, "skewed": skewed, "bursty": bursty}


def generate(kind: str, qa: Sequence[QAItem], n: int, *, seed: int = 0, **params: Any) -> list[WorkloadItem]:
    """Run the generator named ``kind``; unknown kinds list the valid ones."""
    if kind not in GENERATORS:
        raise WorkloadError(f"unknown workload kind {kind!r}; valid kinds: {', '.join(GENERATORS)}")
    if n <= 0:
        raise WorkloadError(f"a workload needs at least one request (got n={n})")
    if not qa:
        raise WorkloadError("the QA set is empty")
    return GENERATORS[kind](qa, n, seed=seed, **params)
