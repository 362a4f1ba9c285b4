"""Edit locality: how many blocks a one-document edit, addition or deletion moves, and a ``--retopic``.

    python -m ragcache.bench.edit_locality [--corpus corpora/sqlite] [--doc c3ref/open.html] [--json]

Copies the corpus to a temporary folder and builds it (no router index) five times: as is;
with one sentence appended to ``--doc``; with a new document (a copy of ``--doc`` under
another name); without ``--doc``; and with ``retopic``. Each step prints the blocks added,
changed and removed against the step before, and whether every changed block holds the
document touched (the topic lock's promise, docs/architecture.md "Topics that stay put"), and
whether every changed block is at least of the document's topic (an addition may split it).
It is a benchmark, not a test (tests/unit/test_topic_lock.py tests the same on a small corpus).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ragcache.corpus.compile import BuildResult, build_corpus

__all__ = ["bench_edit_locality", "main", "only_its_topic"]


def _holding(result: BuildResult, doc_id: str) -> set[str]:
    return {b.id for b in result.corpus.manifest.blocks if doc_id in b.documents}


def _topic_root(block_id: str) -> tuple[str, str]:
    """``category:capi/79.2-1`` → ``("category:capi", "79")``: the group and the top-level topic a block came from.

    Category ids hold no ``/`` (spec.py), so the first ``/`` ends the group; ``.`` numbers a
    split topic's children and ``-`` a document's parts. ``""`` is a group kept whole.
    """
    group, _, label = block_id.partition("/")
    return group, label.split(".")[0].split("-")[0]


def only_its_topic(moved: set[str], holders: set[str]) -> bool:
    """Whether every moved block shares a top-level topic with a block that holds the document.

    A group kept whole (topic ``""``, before or after the step) is the topic of every block of
    its group, so a whole group that outgrew its budget and split into ``/1``, ``/2`` counts.
    """
    roots = {_topic_root(b) for b in holders}
    moved_roots = {_topic_root(b) for b in moved}
    groups = {group for group, _ in roots}
    whole = {group for group, topic in roots | moved_roots if not topic and group in groups}
    return all((group, topic) in roots or group in whole for group, topic in moved_roots)


def _step(name: str, result: BuildResult, doc_id: str | None, previous: BuildResult | None) -> dict[str, Any]:
    changes = result.changes
    assert changes is not None
    moved = set(changes.added + changes.changed + changes.removed) - {"full"}
    holders = (_holding(result, doc_id) | (_holding(previous, doc_id) if previous else set())) if doc_id else set()
    return {
        "step": name,
        "added": len(changes.added),
        "changed": len(changes.changed),
        "removed": len(changes.removed),
        "blocks": changes.added + changes.changed + changes.removed,
        "only_blocks_holding_it": moved <= holders if doc_id else None,
        "only_its_topic": only_its_topic(moved, holders) if doc_id else None,
        "fingerprint": result.corpus.fingerprint[:12],
    }


def bench_edit_locality(corpus: Path, doc: str) -> dict[str, Any]:
    """Run the five builds on a copy of ``corpus``; returns each step's block changes."""
    with tempfile.TemporaryDirectory(prefix="ragcache-edit-") as tmp:
        root = Path(tmp) / corpus.name
        shutil.copytree(corpus, root, ignore=shutil.ignore_patterns(".ragcache"))
        work = Path(tmp) / "work"
        build = lambda **kw: build_corpus(root, work_dir=work, **kw)  # noqa: E731
        first = build()
        path = root / "docs" / doc
        original = path.read_text(encoding="utf-8")
        path.write_text(original + "\nOne more sentence, appended by the edit-locality bench.\n", encoding="utf-8")
        edited = build()
        new_doc = f"{Path(doc).parent.as_posix()}/zz-bench-copy{Path(doc).suffix}".lstrip("./")
        (root / "docs" / new_doc).write_text(original.replace("</title>", " (copy)</title>", 1), encoding="utf-8")
        added = build()
        path.unlink()
        deleted = build()
        retopic = build(retopic=True)
        return {
            "corpus": str(corpus),
            "document": doc,
            "blocks": len(first.corpus.manifest.blocks),
            "steps": [
                _step("edit one document", edited, doc, first),
                _step("add one document", added, new_doc, edited),
                _step("delete one document", deleted, doc, added),
                _step("--retopic", retopic, None, deleted),
            ],
        }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m ragcache.bench.edit_locality``)."""
    parser = argparse.ArgumentParser(description="Blocks moved by one edit, addition, deletion, and a retopic.")
    parser.add_argument("--corpus", type=Path, default=Path("corpora/sqlite"))
    parser.add_argument("--doc", default="c3ref/open.html", help="document id (path under docs/) to edit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = bench_edit_locality(args.corpus, args.doc)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    print(f"{result['corpus']}: {result['blocks']} blocks; document {result['document']}")
    for s in result["steps"]:
        local = (
            ""
            if s["only_blocks_holding_it"] is None
            else f"; only its blocks: {s['only_blocks_holding_it']}, only its topic: {s['only_its_topic']}"
        )
        print(
            f"{s['step']:<22} {s['added']:>4} added {s['changed']:>4} changed {s['removed']:>4} removed"
            f"{local}; fingerprint {s['fingerprint']}"
        )
        if len(s["blocks"]) <= 6:
            print("    " + ", ".join(s["blocks"]))


if __name__ == "__main__":
    main()
