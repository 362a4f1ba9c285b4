"""A fast CPU embedder: the sentence-transformers model as int8 ONNX under onnxruntime.

Embedding is almost all of a cold build. This backend exports the local model
folder to ONNX once (offline, with torch), quantizes its MatMul weights to int8
per channel, caches both under ``~/.cache/ragcache/onnx/<hash of model id>``,
and runs each chunk through the int8 model on its own (no padding, and faster
than batches of 8 on 2 cores). Questions go through the fp32 model: int8 errs
most on short texts, and one question is cheap. Measured on the 2-core AVX2
machines (``python -m ragcache.bench.embedding``): 3–4× the chunks per second of
torch, mean cosine 0.995 to torch's chunk vectors (README, "Build throughput");
CPUs with VNNI gain more from int8.

Weights use ``reduce_range`` (7-bit): the int8 products then never saturate the
16-bit pairs of AVX2, so the integer GEMMs give the same sums on any x86 CPU.
Activations are quantized per run, and every text runs alone, so a chunk's vector
is a pure function of its text (``per_text``): the same chunk gives the same bytes
in any build, whatever else changed, so a rebuild re-embeds only new chunks
(``router/index.py``), and the thread count does not change them either."""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragcache.errors import ModelError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["ONNX_BACKEND", "ONNX_RECIPE", "OnnxEmbedder", "onnx_available"]

ONNX_BACKEND = "onnx-int8"
ONNX_RECIPE = "onnx17-matmul-qint8-perchannel-rr-single-v2"  # part of model_id: change it when the recipe changes
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_available() -> bool:
    """Whether onnxruntime and onnx are installed (``pip install ragcache[local]`` brings both)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


class OnnxEmbedder:
    """Mean-pooled, L2-normalised embeddings from an int8 ONNX copy of a sentence-transformers folder."""

    def __init__(self, folder: Path, model_id: str, threads: int | None = None) -> None:
        if not onnx_available():
            raise ModelError(f"embedding backend {ONNX_BACKEND!r} needs onnxruntime and onnx (in ragcache[local])")
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_id = model_id
        self.folder = folder
        self._fp32_path, self._int8_path = _exported_models(folder, model_id)
        self._options = ort.SessionOptions()
        self._options.inter_op_num_threads = 1
        self._options.intra_op_num_threads = _threads() if threads is None else threads
        self._options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # builds share busy CPUs
        self._options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._options.log_severity_level = 3
        self._session: Any | None = None  # int8, opened on the first embed (routing never needs it)
        self._query_session: Any | None = None  # fp32, opened on the first query (builds never need it)
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(_config_value(folder / "sentence_bert_config.json", "max_seq_length", 256))
        self._tokenizer.no_padding()
        self.dimension = _config_value(folder / "config.json", "hidden_size", 384)

    per_text = True  # a text's vector does not depend on the texts embedded with it

    @property
    def worker_args(self) -> tuple[str, str]:
        """What a worker process needs to make the same embedder (index.py's CPU workers)."""
        return str(self.folder), self.model_id

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Vectors in input order, each text run alone (module docstring)."""
        ids = [enc.ids for enc in self._tokenizer.encode_batch(texts)]
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)
        if ids and self._session is None:
            self._session = self._open(self._int8_path)
        for row, text_ids in enumerate(ids):
            out[row] = self._run([text_ids], self._session)[0]
        return out

    def embed_query(self, text: str) -> NDArray[np.float32]:
        """One question, through the fp32 model: int8 errs most on short texts, and one text is cheap."""
        if self._query_session is None:
            self._query_session = self._open(self._fp32_path)
        return self._run([self._tokenizer.encode(text).ids], self._query_session)[0]

    def _open(self, path: Path) -> Any:
        import onnxruntime as ort

        return ort.InferenceSession(str(path), self._options, providers=["CPUExecutionProvider"])

    def _run(self, rows: list[list[int]], session: Any) -> NDArray[np.float32]:
        width = max(len(row) for row in rows)
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        feeds = dict(zip(_INPUTS, (input_ids, mask, np.zeros_like(input_ids)), strict=True))
        hidden = session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _threads() -> int:
    """torch's thread count when torch is loaded (the same knob for both backends), else every core."""
    import sys

    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else 0


def _config_value(path: Path, key: str, default: int) -> int:
    """An integer from a model folder's JSON config (``max_seq_length``, ``hidden_size``)."""
    import json

    try:
        return int(json.loads(path.read_text(encoding="utf-8"))[key])
    except (OSError, ValueError, KeyError, TypeError):
        return default


def _exported_models(folder: Path, model_id: str) -> tuple[Path, Path]:
    """The cached fp32 and int8 ONNX files for ``model_id``, exported and quantized on first use (atomically)."""
    from ragcache.hashing import content_hash
    from ragcache.models import cache_home

    root = cache_home() / "onnx" / content_hash(model_id)[:24]
    paths = (root / "model.onnx", root / "model-int8.onnx")
    if all(path.is_file() for path in paths):
        return paths
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=root.parent))
    try:
        with _quiet():  # tracer warnings and quantizer hints are not the user's business
            _export(folder, work / paths[0].name)
            _quantize(work / paths[0].name, work / paths[1].name)
        root.mkdir(exist_ok=True)
        for path in paths:
            (work / path.name).replace(path)
    except Exception as exc:  # torch.onnx and onnxruntime raise many kinds
        raise ModelError(f"{folder}: cannot export the embedding model to ONNX: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return paths


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence warnings and log records (the quantizer logs on the root logger) for one export."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(before)


def _export(folder: Path, path: Path) -> None:
    """Export the transformer (last hidden state) with dynamic batch and sequence axes."""
    import torch
    from transformers import AutoModel

    class HiddenState(torch.nn.Module):
        """Positional inputs in, ``last_hidden_state`` out (what torch.onnx.export traces)."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    example = torch.ones(2, 8, dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*_INPUTS, "last_hidden_state")}
    with torch.no_grad():
        torch.onnx.export(
            HiddenState(model),
            (example, example, torch.zeros_like(example)),
            str(path),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    """int8 MatMul weights, per output channel, 7-bit range (no AVX2 saturation); activations per batch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QInt8,
    )
