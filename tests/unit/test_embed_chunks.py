"""scripts/embed_chunks.py dump-plain: the GPU measurement's input (docs/bench/corpus-scale.md).

Its printed counts are what the doc quotes, so they must be those of the lines it writes; the
dump itself must be the same bytes on every run (the 10M-token corpus's is checked by SHA-256).
"""

from __future__ import annotations

import json
import lzma
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from embed_chunks import dump_plain


def _corpus(root: Path) -> Path:
    docs = root / "docs" / "wiki"
    docs.mkdir(parents=True)
    long = " ".join(f"word{i}" for i in range(60))  # 469 characters: cut twice at a limit of 200
    (docs / "a.md").write_text(f"# Alpha\n\nshort first paragraph\n\n{long}\n\ntail paragraph\n", encoding="utf-8")
    (docs / "b.md").write_text("# Beta\n\none\n\ntwo\n", encoding="utf-8")
    return root


def test_dump_plain_counts_every_line_it_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = _corpus(tmp_path / "c")
    dump_plain(corpus, tmp_path / "d.jsonl.xz", limit=200)
    printed = json.loads(capsys.readouterr().out)
    with lzma.open(tmp_path / "d.jsonl.xz", "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    bodies = [r["text"].split("\n", 1)[1] for r in rows]
    # the first paragraph is flushed by the long one that follows it (the count the old code missed)
    assert bodies[0] == "short first paragraph"
    assert [r["text"].split("\n", 1)[0] for r in rows] == ["Alpha"] * 4 + ["Beta"]
    assert all(len(b) <= 200 for b in bodies)
    assert printed == {"chunks": len(rows), "chars": sum(len(b) for b in bodies)}
    assert all(r["tokens"] == 0 for r in rows)


def test_dump_plain_is_the_same_bytes_every_run(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c")
    dump_plain(corpus, tmp_path / "1.jsonl.xz", limit=200)
    dump_plain(corpus, tmp_path / "2.jsonl.xz", limit=200)
    assert (tmp_path / "1.jsonl.xz").read_bytes() == (tmp_path / "2.jsonl.xz").read_bytes()
