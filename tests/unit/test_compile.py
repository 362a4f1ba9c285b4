"""build_corpus: determinism, content addressing, atomicity, work reuse (real SmolLM2 tokenizer)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ragcache.corpus.compile import build_corpus
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.corpus.store import default_build_dir, load_corpus
from ragcache.errors import CorpusError, EmptyCorpusError

SPEC = """name: t
title: Test corpus
license: CC0-1.0
instructions: Answer from the documents.
tools:
  - {type: function, function: {name: lookup, description: Find a page, parameters: {type: object}}}
examples:
  - {question: "What is A?", answer: "A is the first letter [doc: alpha/a.md]."}
build: {min_block_tokens: 0}
"""
DOCS = {
    "alpha/a.md": "# Alpha\n\nThe letter A comes first.\n",
    "alpha/b.txt": "B comes second.\r\nIt has a CRLF line ending.   \n",
    "beta/page.html": "<html><head><title>Beta page</title></head><body><h1>Beta</h1><p>Beta text.</p></body></html>",
    "beta/data.json": '{"zeta": 1, "alpha": [1, 2]}',
    "gamma/c.md": "# Gamma\n\nGamma is the third letter.\n",
}


def make_corpus(root: Path, docs: dict[str, str] = DOCS, spec: str = SPEC, order: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.yaml").write_text(spec, encoding="utf-8")
    for i, rel in enumerate(order or list(docs)):
        path = root / "docs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(docs[rel].encode("utf-8"))
        os.utime(path, (1_000_000 + 7919 * i, 1_000_000 + 7919 * i))
    return root


def build(corpus: Path, tmp_path: Path, **kwargs):
    return build_corpus(corpus, work_dir=tmp_path / "work", **kwargs)


def snapshot(build_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(build_dir).as_posix(): p.read_bytes() for p in sorted(build_dir.rglob("*")) if p.is_file()}


def block_hashes(corpus: CompiledCorpus) -> dict[str, str]:
    return {b.id: b.sha256 for b in corpus.manifest.blocks}


def test_build_layout_and_manifest(tmp_path: Path) -> None:
    result = build(make_corpus(tmp_path / "c"), tmp_path)
    corpus = result.corpus
    assert result.build_dir == default_build_dir(tmp_path / "c")
    assert list(block_hashes(corpus)) == [
        "instructions",
        "tools",
        "examples",
        "category:alpha",
        "category:beta",
        "category:gamma",
        "full",
    ]
    assert [d.id for d in corpus.manifest.documents] == [
        "alpha/a.md",
        "alpha/b.txt",
        "beta/data.json",
        "beta/page.html",
        "gamma/c.md",
    ]
    beta = corpus.block_text("category:beta")
    assert '<document id="beta/page.html" title="Beta page">\n# Beta\n\nBeta text.\n</document>' in beta
    assert '"alpha": [' in beta and beta.index('"alpha"') < beta.index('"zeta"')  # JSON re-rendered sorted
    alpha = corpus.block_text("category:alpha")
    assert "\r" not in alpha and "ending.\n" in alpha
    full = corpus.block_text("full")
    assert full == "".join(corpus.block_text(b) for b in corpus.category_block_ids())
    assert corpus.block_text("tools").startswith('[\n  {\n    "function"')
    assert corpus.manifest.extra["tools"][0]["function"]["name"] == "lookup"
    assert not corpus.manifest.tokens_estimated and corpus.manifest.tokenizer == "smollm2"
    assert all(b.tokens > 0 for b in corpus.manifest.blocks)
    chunks = corpus.chunks
    assert {c.doc_id for c in chunks} == set(corpus.documents)
    assert all(c.block_id in corpus.blocks for c in chunks)
    assert corpus.manifest.chunk_count == len(chunks)
    manifest_text = (result.build_dir / "manifest.json").read_text()
    assert str(tmp_path) not in manifest_text  # no absolute paths in anything hashed


def test_same_corpus_different_order_mtimes_and_dirs_is_byte_identical(tmp_path: Path) -> None:
    first = make_corpus(tmp_path / "one", order=list(DOCS))
    second = make_corpus(tmp_path / "elsewhere" / "deeper" / "two", order=list(reversed(DOCS)))
    for path in (second / "docs").rglob("*"):
        os.utime(path, (2_000_000_000, 2_000_000_000))
    a = build_corpus(first, work_dir=tmp_path / "work-a")
    b = build_corpus(second, tmp_path / "out-b", work_dir=tmp_path / "work-b")
    assert snapshot(a.build_dir) == snapshot(b.build_dir)
    assert (a.build_dir / "manifest.json").read_bytes() == (b.build_dir / "manifest.json").read_bytes()


def test_editing_one_document_changes_only_its_blocks(tmp_path: Path) -> None:
    corpus_dir = make_corpus(tmp_path / "c")
    before = build(corpus_dir, tmp_path).corpus
    (corpus_dir / "docs/beta/page.html").write_text("<p>Beta text, edited.</p>", encoding="utf-8")
    after = build(corpus_dir, tmp_path).corpus
    old, new = block_hashes(before), block_hashes(after)
    changed = {bid for bid in old if old[bid] != new[bid]}
    assert changed == {"category:beta", "full"}
    assert before.fingerprint != after.fingerprint
    assert before.documents["alpha/a.md"] == after.documents["alpha/a.md"]
    assert before.documents["beta/page.html"].sha256 != after.documents["beta/page.html"].sha256


def test_unchanged_rebuild_reuses_document_work(tmp_path: Path) -> None:
    corpus_dir = make_corpus(tmp_path / "c")
    first = build(corpus_dir, tmp_path)
    files = snapshot(first.build_dir)
    second = build(corpus_dir, tmp_path)
    assert first.reused_documents == 0
    assert second.reused_documents == len(DOCS)
    assert snapshot(second.build_dir) == files


GARDEN = ["tomato", "seedling", "compost", "mulch", "soil", "pruning", "shears", "roses", "harvest", "watering"]
NETWORK = ["packet", "router", "socket", "handshake", "latency", "bandwidth", "firewall", "subnet", "gateway", "port"]
TOPIC_SPEC = "name: t\nbuild: {max_block_tokens: 1000, full_budget_tokens: 2000, min_block_tokens: 100}\n"


def topic_text(words: list[str], i: int) -> str:
    """About 370 tokens on one topic; ``i`` varies the word mix and marks each sentence."""
    sentences = []
    for s in range(14):
        w = [words[(i * 3 + s * 5 + k * 7) % len(words)] for k in range(8)]
        sentences.append(f"The {w[0]} and {w[1]} need {w[2]} with {w[3]}, {w[4]} or {w[5]} by {w[6]} {w[7]} n{i}x{s}.")
    return " ".join(sentences)


def topic_docs() -> dict[str, str]:
    """A large category whose documents alternate, by path, between gardening and networking."""
    docs = {f"big/doc{i:02d}.md": f"# Doc {i}\n\n{topic_text((GARDEN, NETWORK)[i % 2], i)}\n" for i in range(24)}
    docs["small/tiny.md"] = "# Tiny\n\nA tiny note about compost and soil, too small for a block of its own.\n"
    docs["zlast/z.md"] = "# Z\n\n" + topic_text(GARDEN, 99) + "\n"
    return docs


def test_large_category_is_cut_into_topic_parts(tmp_path: Path) -> None:
    corpus = build(make_corpus(tmp_path / "c", topic_docs(), TOPIC_SPEC), tmp_path).corpus
    parts = [bid for bid in corpus.category_block_ids() if bid.startswith("category:big+small/")]
    assert len(parts) > 4 and parts == [f"category:big+small/{n}" for n in range(1, len(parts) + 1)]
    assert all(corpus.block(bid).tokens <= 1000 for bid in corpus.blocks)
    topic = {f"big/doc{i:02d}.md": i % 2 for i in range(24)}
    for bid in parts:  # each part is one topic, documents in path order inside it
        docs = [d for d in corpus.block(bid).documents if d.startswith("big/")]
        assert len({topic[d] for d in docs}) == 1 and docs == sorted(docs), (bid, docs)
    kinds = [topic[next(d for d in corpus.block(b).documents if d.startswith("big/"))] for b in parts]
    assert kinds == sorted(kinds)  # depth-first order: one topic's parts, then the other's
    categories = {c.id: c for c in corpus.manifest.categories}
    (tiny_block,) = categories["small"].block_ids  # the tiny category joins the gardening topic
    assert tiny_block in parts and topic[corpus.block(tiny_block).documents[0]] == 0
    assert categories["zlast"].block_ids == ("category:zlast",) and corpus.full_block_id is None
    assert sorted(d for b in parts for d in corpus.block(b).documents) == sorted([*topic, "small/tiny.md"])


def test_topic_parts_are_byte_identical_whatever_the_file_order(tmp_path: Path) -> None:
    docs = topic_docs()
    a = build_corpus(make_corpus(tmp_path / "one", docs, TOPIC_SPEC), work_dir=tmp_path / "work-a")
    second = make_corpus(tmp_path / "two", docs, TOPIC_SPEC, order=list(reversed(docs)))
    b = build_corpus(second, tmp_path / "out-b", work_dir=tmp_path / "work-b")
    assert snapshot(a.build_dir) == snapshot(b.build_dir)


def test_editing_one_document_changes_few_topic_parts(tmp_path: Path) -> None:
    docs = topic_docs()
    corpus_dir = make_corpus(tmp_path / "c", docs, TOPIC_SPEC)
    before = build(corpus_dir, tmp_path).corpus
    edited = docs["big/doc07.md"].replace("n7x3.", "n7x3. One more sentence about the firewall.")
    (corpus_dir / "docs/big/doc07.md").write_text(edited, encoding="utf-8")
    after = build(corpus_dir, tmp_path).corpus
    old = {b.sha256 for b in before.manifest.blocks}
    changed = [b for b in after.manifest.blocks if b.sha256 not in old]
    assert any("big/doc07.md" in b.documents for b in changed)
    # the edit moves documents only inside its own topic's subtree (networking: odd numbers), never the other
    assert all(int(d[len("big/doc") :][:2]) % 2 == 1 for b in changed for d in b.documents), changed
    assert len(changed) <= 4 and len(after.manifest.blocks) >= 15


def test_document_larger_than_a_block_is_cut_at_paragraphs(tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {i}: " + "the quick brown fox jumps over the lazy dog. " * 20 for i in range(30)]
    docs = {"only/long.md": "# Long\n\n" + "\n\n".join(paragraphs) + "\n"}
    spec = "name: t\nbuild: {max_block_tokens: 1000, full_budget_tokens: 0}\n"
    corpus = build(make_corpus(tmp_path / "c", docs, spec), tmp_path).corpus
    ids = corpus.category_block_ids()
    assert len(ids) > 3
    texts = [corpus.block_text(bid) for bid in ids]
    assert all(corpus.block(bid).tokens <= 1000 for bid in ids)
    assert '<document id="only/long.md" title="Long" part="2">' in texts[1]
    assert all(p.rstrip() in "".join(texts) for p in paragraphs)  # normalized: no trailing spaces


def test_steps_run_in_the_temporary_build_before_the_swap(tmp_path: Path) -> None:
    corpus_dir = make_corpus(tmp_path / "c")
    seen: list[tuple[Path, str, Path | None]] = []

    def step(tmp: Path, corpus: CompiledCorpus, previous: Path | None) -> None:
        assert tmp != default_build_dir(corpus_dir)
        (tmp / "index").mkdir()
        (tmp / "index" / "marker.txt").write_text(corpus.fingerprint)
        seen.append((tmp, corpus.fingerprint, previous))

    first = build(corpus_dir, tmp_path, steps=[step])
    assert (first.build_dir / "index" / "marker.txt").read_text() == first.corpus.fingerprint
    build(corpus_dir, tmp_path, steps=[step])
    assert seen[0][2] is None and seen[1][2] == first.build_dir
    assert not seen[1][0].exists()  # the temporary folder is gone after the swap


def _break_invalid_utf8(c: Path) -> str:
    (c / "docs/alpha/bad.md").write_bytes(b"ok\n\xff\xfe broken\n")
    return "docs/alpha/bad.md"


def _break_symlink(c: Path) -> str:
    (c / "docs/alpha/gone.md").symlink_to(c / "nowhere.md")
    return "docs/alpha/gone.md"


def _break_json(c: Path) -> str:
    (c / "docs/beta/data.json").write_text('{"a": 1,,}')
    return "docs/beta/data.json"


def _break_pdf(c: Path) -> str:
    (c / "docs/beta/report.pdf").write_bytes(b"this is not a pdf")
    return "docs/beta/report.pdf"


def _break_yaml(c: Path) -> str:
    (c / "corpus.yaml").write_text("name: [t\n")
    return "corpus.yaml"


def _break_unknown_key(c: Path) -> str:
    (c / "corpus.yaml").write_text(SPEC + "chunking: 3\n")
    return "corpus.yaml"


def _break_unknown_category_glob(c: Path) -> str:
    (c / "corpus.yaml").write_text(
        SPEC + "categories:\n  - {id: alpha, globs: ['alpha/**']}\n"
        "  - {id: beta, globs: ['beta/**', 'gamma/**']}\n  - {id: api, globs: ['api/**']}\n"
    )
    return "corpus.yaml"


def _break_uncategorized(c: Path) -> str:
    (c / "corpus.yaml").write_text(SPEC + "categories:\n  - {id: alpha, globs: ['alpha/**', 'beta/**']}\n")
    return "docs/gamma/c.md"


def _break_empty(c: Path) -> str:
    shutil.rmtree(c / "docs")
    (c / "docs").mkdir()
    return "docs"


@pytest.mark.parametrize(
    "breaker",
    [
        _break_invalid_utf8,
        _break_symlink,
        _break_json,
        _break_pdf,
        _break_yaml,
        _break_unknown_key,
        _break_unknown_category_glob,
        _break_uncategorized,
        _break_empty,
    ],
)
def test_broken_input_fails_naming_the_file_and_keeps_previous_build(tmp_path: Path, breaker) -> None:
    corpus_dir = make_corpus(tmp_path / "c")
    good = build(corpus_dir, tmp_path)
    before = snapshot(good.build_dir)
    culprit = breaker(corpus_dir)
    with pytest.raises(CorpusError) as info:
        build(corpus_dir, tmp_path)
    assert str(corpus_dir / culprit) in str(info.value)
    assert snapshot(good.build_dir) == before
    assert sorted(p.name for p in good.build_dir.parent.iterdir()) == [".build.lock", "build"]  # no temp dirs


def test_failing_step_leaves_previous_build_untouched(tmp_path: Path) -> None:
    corpus_dir = make_corpus(tmp_path / "c")
    good = build(corpus_dir, tmp_path)
    before = snapshot(good.build_dir)
    (corpus_dir / "docs/alpha/a.md").write_text("# Alpha\n\nChanged.\n")

    def failing(tmp: Path, corpus: CompiledCorpus, previous: Path | None) -> None:
        raise RuntimeError("index step failed")

    with pytest.raises(RuntimeError):
        build(corpus_dir, tmp_path, steps=[failing])
    assert snapshot(good.build_dir) == before
    assert sorted(p.name for p in good.build_dir.parent.iterdir()) == [".build.lock", "build"]


def test_empty_corpus_is_an_empty_corpus_error(tmp_path: Path) -> None:
    corpus_dir = make_corpus(tmp_path / "c", docs={"a/empty.md": "  \n\n"})
    with pytest.raises(EmptyCorpusError, match="empty"):
        build(corpus_dir, tmp_path)


def test_refuses_to_replace_a_folder_that_is_not_a_build(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(CorpusError, match="not a ragcache build"):
        build(make_corpus(tmp_path / "c"), tmp_path, out=out)
    assert (out / "keep.txt").read_text() == "mine"


def test_load_corpus_accepts_corpus_or_build_dir(tmp_path: Path) -> None:
    corpus_dir = make_corpus(tmp_path / "c")
    with pytest.raises(CorpusError, match="ragcache build"):
        load_corpus(corpus_dir)
    result = build(corpus_dir, tmp_path)
    assert load_corpus(corpus_dir).fingerprint == result.corpus.fingerprint
    assert load_corpus(result.build_dir).fingerprint == result.corpus.fingerprint
    with pytest.raises(CorpusError, match="no such"):
        load_corpus(tmp_path / "missing")


def test_chars_tokenizer_is_marked_estimated(tmp_path: Path) -> None:
    corpus = build(make_corpus(tmp_path / "c", spec="name: t\nbuild: {tokenizer: chars}\n"), tmp_path).corpus
    assert corpus.manifest.tokens_estimated and corpus.manifest.tokenizer == "chars"
