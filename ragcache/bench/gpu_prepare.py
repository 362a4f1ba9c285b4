"""What the GPU run needs, made here (the GPU machine has no ragcache dependencies
to build with and reaches no index): corpora derived from ``corpora/sqlite`` and
built (no chunk index: they fit the window whole, so the router never needs one),
and an 8B-shaped model folder (Llama-3-8B shape, SmolLM2's tokenizer, no weights:
vLLM serves it with ``--load-format dummy``).

Each corpus takes whole documents from a category of the SQLite documentation, in
path order, while they fit its token target — deterministic, like every build.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ragcache.corpus.compile import build_corpus
from ragcache.corpus.spec import glob_match

__all__ = ["CORPORA", "DerivedCorpus", "prepare", "write_model_folder"]

SOURCE = Path("corpora/sqlite")
# Llama-3-8B's shape with SmolLM2's vocabulary (its tokenizer serves the prompts).
LLAMA_8B_SHAPE = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 65536,
    "rms_norm_eps": 1e-05,
    "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "vocab_size": 49152,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
    "dtype": "bfloat16",
    "torch_dtype": "bfloat16",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@dataclass(frozen=True)
class DerivedCorpus:
    """A corpus of whole SQLite pages matching ``globs``, up to ``target_tokens``."""

    name: str
    globs: tuple[str, ...]
    target_tokens: int
    skip: int = 0  # candidates passed over first, so twins share no pages


CORPORA = (
    DerivedCorpus("gpu-32k", ("*.html",), 31_000),  # the 32k prefix (window 40960)
    DerivedCorpus("gpu-8k", ("lang_*.html",), 7_600),  # the 8k prefix; kept warm under pressure
    DerivedCorpus("gpu-8k-b", ("c3ref/*.html",), 7_600),  # the unkept twin
    DerivedCorpus("gpu-8k-c", ("c3ref/*.html",), 7_600, skip=60),  # more prefixes for the replica test
    DerivedCorpus("gpu-8k-d", ("lang_*.html",), 7_600, skip=20),
)


def _write_corpus(out: Path, title: str, docs: list[Path]) -> None:
    if out.exists():
        shutil.rmtree(out)
    (out / "docs").mkdir(parents=True)
    for doc in docs:
        target = out / "docs" / doc.relative_to(SOURCE / "docs")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(doc, target)
    spec = {
        "name": out.name,
        "title": title,
        "license": "Public domain (SQLite documentation, from corpora/sqlite)",
        "instructions": "You are a precise assistant for SQLite. Answer using only the documentation below "
        "and cite pages as [doc: <id>].\n",
        "categories": [{"id": "docs", "title": title, "globs": ["**"]}],
        "build": {"tokenizer": "smollm2", "full_budget_tokens": 200_000, "max_block_tokens": 200_000},
    }
    (out / "corpus.yaml").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def derive(corpus: DerivedCorpus, root: Path) -> dict[str, object]:
    """Copy candidate pages, build, keep the first ones within the target, rebuild."""
    out = root / corpus.name
    docs = SOURCE / "docs"
    candidates = sorted(
        p for p in docs.rglob("*.html") if any(glob_match(g, p.relative_to(docs).as_posix()) for g in corpus.globs)
    )[corpus.skip :]
    _write_corpus(out, f"SQLite pages ({corpus.name})", candidates)
    tokens = {d.id: d.tokens for d in build_corpus(out).corpus.manifest.documents}
    chosen, total = [], 0
    for doc in candidates:
        n = tokens[doc.relative_to(docs).as_posix()]
        if total + n <= corpus.target_tokens:
            chosen.append(doc)
            total += n
    _write_corpus(out, f"SQLite pages ({corpus.name})", chosen)
    built = build_corpus(out).corpus
    return {
        "name": corpus.name,
        "documents": len(chosen),
        "tokens": built.total_tokens,
        "fingerprint": built.manifest.fingerprint,
    }


def write_model_folder(out: Path, tokenizer_dir: Path) -> Path:
    """config.json of the 8B shape plus SmolLM2's tokenizer files (no weights)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(LLAMA_8B_SHAPE, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copyfile(tokenizer_dir / name, out / name)
    return out


def prepare(root: Path) -> list[dict[str, object]]:
    """Derive and build every corpus under ``root/corpora`` and write ``root/model``."""
    from ragcache.models import ensure_model

    write_model_folder(root / "model", Path(ensure_model()))
    return [derive(c, root / "corpora") for c in CORPORA]
