#!/usr/bin/env python3
"""Derive a QA set with gold documents from the SQLite docs' own cross-references.

The SQLite documentation maps terms to the pages that define them in two places:
``meta/keyword_index.html`` (the keyword index, kept beside the corpus but not in
it) and the C-API lists ``docs/c3ref/funclist.html``, ``objlist.html`` and
``constlist.html``. Each link "term → page" becomes a question naming the term,
whose gold document is that page. One question per gold page (the term picked by
a stable hash, so the choice is deterministic and not ours), pages outside the
corpus and the list pages themselves are skipped.

    python scripts/derive_sqlite_qa.py [--corpus corpora/sqlite] [--out tests/data/sqlite_qa.jsonl]
"""

from __future__ import annotations

import argparse
import html
import json
import posixpath
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragcache.hashing import canonical_json, content_hash  # noqa: E402

LINK = re.compile(r"""<a href=(["'])([^"']+)\1>([^<]+)</a>""")
SOURCES = (
    ("meta/keyword_index.html", ""),
    ("docs/c3ref/funclist.html", "c3ref"),
    ("docs/c3ref/objlist.html", "c3ref"),
    ("docs/c3ref/constlist.html", "c3ref"),
)
LIST_PAGES = {"c3ref/funclist.html", "c3ref/objlist.html", "c3ref/constlist.html", "c3ref/intro.html"}
IDENTIFIER = re.compile(r"^(sqlite3\w*|SQLITE_\w+)(\(\))?$")


def links(corpus: Path, source: str, base: str) -> list[tuple[str, str]]:
    """(term, document id) pairs of one index page, resolved relative to the page."""
    text = (corpus / source).read_text(encoding="utf-8", errors="replace")
    out = []
    for _, href, label in LINK.findall(text):
        if "://" in href or href.startswith(("#", "mailto:")):
            continue
        doc = posixpath.normpath(posixpath.join(base, href.split("#", 1)[0])) if href.split("#", 1)[0] else ""
        term = " ".join(html.unescape(label).split())
        if doc and len(term) >= 3 and re.search(r"[A-Za-z]", term):
            out.append((term, doc))
    return out


def question_for(term: str) -> str:
    """A question that names the concept (and nothing else of the page)."""
    if IDENTIFIER.match(term):
        return f"What is {term} in SQLite and how is it used?"
    return f"What does the SQLite documentation say about {term}?"


def derive(corpus: Path) -> list[dict[str, object]]:
    docs = {p.relative_to(corpus / "docs").as_posix() for p in (corpus / "docs").rglob("*") if p.is_file()}
    terms: dict[str, dict[str, str]] = {}  # gold doc -> term -> source
    for source, base in SOURCES:
        for term, doc in links(corpus, source, base):
            if doc in docs and doc not in LIST_PAGES:
                terms.setdefault(doc, {}).setdefault(term, Path(source).name)
    rows = []
    for doc in sorted(terms):
        term = min(terms[doc], key=lambda t: content_hash(f"{doc}\n{t}"))
        rows.append({"question": question_for(term), "term": term, "gold": [doc], "source": terms[doc][term]})
    for number, row in enumerate(rows, start=1):
        row["id"] = f"sqlite-{number:04d}"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpora" / "sqlite")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "sqlite_qa.jsonl")
    args = parser.parse_args()
    rows = derive(args.corpus)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(canonical_json(r) + "\n" for r in rows), encoding="utf-8")
    pages = len({g for r in rows for g in r["gold"]})  # type: ignore[attr-defined]
    print(json.dumps({"questions": len(rows), "gold_pages": pages, "out": str(args.out)}))


if __name__ == "__main__":
    main()
