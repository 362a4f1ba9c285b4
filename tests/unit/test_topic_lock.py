"""The topic lock (docs/architecture.md "Topics that stay put"): edits, additions and deletions move few blocks.

Real builds with the real SmolLM2 tokenizer on a synthetic two-topic corpus (a build of
corpora/sqlite takes 6–20 s on the 2-core machine: too slow for a unit test;
``python -m ragcache.bench.edit_locality`` runs the same checks on it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ragcache.corpus.compile import BlockChanges, build_corpus
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.corpus.topic_lock import LOCK_FILE, TopicLock

GARDEN = ["tomato", "seedling", "compost", "mulch", "soil", "pruning", "shears", "roses", "harvest", "watering"]
NETWORK = ["packet", "router", "socket", "handshake", "latency", "bandwidth", "firewall", "subnet", "gateway", "port"]
SPEC = "name: t\nbuild: {max_block_tokens: 1000, full_budget_tokens: 100000, min_block_tokens: 100}\n"


def text(words: list[str], i: int, sentences: int = 14) -> str:
    out = []
    for s in range(sentences):
        w = [words[(i * 3 + s * 5 + k * 7) % len(words)] for k in range(8)]
        out.append(f"The {w[0]} and {w[1]} need {w[2]} with {w[3]}, {w[4]} or {w[5]} by {w[6]} {w[7]} n{i}x{s}.")
    return " ".join(out)


def docs() -> dict[str, str]:
    out = {f"big/doc{i:02d}.md": f"# Doc {i}\n\n{text((GARDEN, NETWORK)[i % 2], i)}\n" for i in range(24)}
    out["small/tiny.md"] = "# Tiny\n\nA tiny note about compost and soil.\n"
    out["tiny2/t.md"] = "# Tiny two\n\nA tiny note about packets.\n"
    return out


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.yaml").write_text(SPEC, encoding="utf-8")
    for i, (rel, body) in enumerate(files.items()):
        path = root / "docs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    return root


def holding(corpus: CompiledCorpus, doc_id: str) -> set[str]:
    return {b.id for b in corpus.manifest.blocks if doc_id in b.documents and b.id != "full"}


def test_editing_one_document_changes_only_the_blocks_that_hold_it(tmp_path: Path) -> None:
    root = write(tmp_path / "c", docs())
    first = build_corpus(root, work_dir=tmp_path / "w")
    path = root / "docs/big/doc07.md"
    path.write_text(path.read_text(encoding="utf-8") + "One more sentence about the firewall.\n", encoding="utf-8")
    second = build_corpus(root, work_dir=tmp_path / "w")
    assert second.changes is not None and not second.changes.added and not second.changes.removed
    assert set(second.changes.changed) == holding(first.corpus, "big/doc07.md") | {"full"}
    assert second.corpus.fingerprint != first.corpus.fingerprint


def test_adding_a_document_changes_at_most_its_topics_blocks(tmp_path: Path) -> None:
    root = write(tmp_path / "c", docs())
    first = build_corpus(root, work_dir=tmp_path / "w")
    write(root, {"big/new.md": f"# New\n\n{text(NETWORK, 40, sentences=4)}\n"})
    second = build_corpus(root, work_dir=tmp_path / "w")
    joined = holding(second.corpus, "big/new.md")
    (topic,) = {b.split("/")[1].split("-")[0] for b in joined}  # one topic, maybe split into children
    assert second.changes is not None and "full" in second.changes.changed
    moved = set(second.changes.added + second.changes.changed + second.changes.removed) - {"full"}
    assert moved and all(b.split("/")[1].split(".")[0] == topic.split(".")[0] for b in moved), moved
    # it joined a networking topic (odd documents), and every unchanged document kept its block
    mates = {d for b in joined for d in second.corpus.block(b).documents} - {"big/new.md"}
    assert mates and all(int(d[len("big/doc") :][:2]) % 2 == 1 for d in mates if d.startswith("big/doc"))
    before = {d: holding(first.corpus, d) for d in docs()}
    assert all(holding(second.corpus, d) == before[d] for d in docs() if not (before[d] & moved))
    assert second.corpus.fingerprint != first.corpus.fingerprint


def test_deleting_a_document_changes_only_its_block(tmp_path: Path) -> None:
    root = write(tmp_path / "c", docs())
    first = build_corpus(root, work_dir=tmp_path / "w")
    (root / "docs/big/doc10.md").unlink()
    second = build_corpus(root, work_dir=tmp_path / "w")
    assert second.changes is not None
    assert set(second.changes.changed + second.changes.removed) == holding(first.corpus, "big/doc10.md") | {"full"}
    assert not second.changes.added


def test_a_topic_that_outgrows_the_budget_splits_and_only_it(tmp_path: Path) -> None:
    root = write(tmp_path / "c", docs())
    first = build_corpus(root, work_dir=tmp_path / "w")
    (block,) = holding(first.corpus, "big/doc05.md")
    members = [d for d in first.corpus.block(block).documents if d != "big/doc05.md"]
    assert members, "doc05 shares its block"
    path = root / "docs/big/doc05.md"
    path.write_text(path.read_text(encoding="utf-8") + text(NETWORK, 77, sentences=12) + "\n", encoding="utf-8")
    second = build_corpus(root, work_dir=tmp_path / "w")
    base, parent = block.split("/")
    assert second.changes is not None and second.changes.removed == (block,)
    assert len(second.changes.added) >= 2
    assert all(b.startswith(f"{base}/{parent}.") for b in second.changes.added), second.changes.added
    assert set(second.changes.changed) == {"full"}


def test_retopic_clusters_afresh_and_is_reported(tmp_path: Path) -> None:
    root = write(tmp_path / "c", docs())
    fresh = build_corpus(root, tmp_path / "fresh", work_dir=tmp_path / "w")
    for i in range(24, 30):  # grow one topic a lot: the lock splits it, a fresh clustering balances the tree
        write(root, {f"big/doc{i:02d}.md": f"# Doc {i}\n\n{text(GARDEN, i)}\n"})
    kept = build_corpus(root, tmp_path / "fresh", work_dir=tmp_path / "w")
    again = build_corpus(root, tmp_path / "fresh", work_dir=tmp_path / "w", retopic=True)
    assert fresh.changes is None and not kept.retopic and again.retopic and again.changes is not None
    other = build_corpus(root, tmp_path / "other", work_dir=tmp_path / "w")  # no lock there: fresh clustering
    assert [b.id for b in again.corpus.manifest.blocks] == [b.id for b in other.corpus.manifest.blocks]
    assert again.corpus.fingerprint == other.corpus.fingerprint
    expected = BlockChanges.between(
        {b.id: b.sha256 for b in kept.corpus.manifest.blocks}, {b.id: b.sha256 for b in other.corpus.manifest.blocks}
    )
    assert again.changes == expected and again.changes.count > 0


def test_merged_small_categories_are_named_after_all_of_them(tmp_path: Path) -> None:
    files = {"a/x.md": "# X\n\nalpha notes.\n", "b/y.md": "# Y\n\nbeta notes.\n", "c/z.md": "# Z\n\ngamma notes.\n"}
    corpus = build_corpus(write(tmp_path / "c", files), work_dir=tmp_path / "w").corpus
    assert corpus.category_block_ids() == ["category:a+b+c"]
    lock = TopicLock.read(corpus.root / LOCK_FILE)
    assert lock is not None and lock.groups[0].categories == ("a", "b", "c")
    data = json.loads((corpus.root / LOCK_FILE).read_text(encoding="utf-8"))
    assert data["groups"][0]["topics"] == [{"documents": ["a/x.md", "b/y.md", "c/z.md"], "id": ""}]


def test_an_unreadable_lock_means_a_fresh_clustering_not_an_error(tmp_path: Path) -> None:
    root = write(tmp_path / "c", docs())
    first = build_corpus(root, work_dir=tmp_path / "w")
    (first.build_dir / LOCK_FILE).write_text("{not json", encoding="utf-8")
    second = build_corpus(root, work_dir=tmp_path / "w")
    assert second.corpus.fingerprint == first.corpus.fingerprint and second.changes == BlockChanges((), (), ())
