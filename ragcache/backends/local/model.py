"""The local engine's model: its options, loading it once per process, naming its weights.

``backend.options`` of the local backend are :class:`LocalOptions`: ``device``
(default: ``cuda`` when present, else ``cpu``), ``dtype`` (default: float32 on
CPU, where bf16 matmuls are ~5x slower on small CPUs, else bfloat16) and
``threads`` (torch's intra-op threads, process-wide; 1 is much faster when the
cores are shared with other busy processes) and ``max_batch`` (how many
requests decode together, continuous batching; 1 serves one at a time) and
``cuda_graphs`` (replay a cached request's first forward from a CUDA graph,
:mod:`~ragcache.backends.local.graphs`; default: on where the device is CUDA;
``true`` on another device is ignored with a warning, ``false`` keeps every
forward eager). Any other key is a ConfigError.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragcache.backends.base import BackendOptions
from ragcache.errors import ModelError
from ragcache.hashing import chain_hash, content_hash

__all__ = ["LocalOptions", "eos_ids", "load_model", "model_fingerprint"]

_HEAD_BYTES = 1 << 20
_MODELS: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()


class LocalOptions(BackendOptions):
    """``backend.options`` of the local backend."""

    device: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    threads: int | None = Field(None, ge=1)
    max_batch: int = Field(8, ge=1, le=256)
    cuda_graphs: bool | None = None

    def resolved_cuda_graphs(self, device: str) -> bool:
        """Whether cached first forwards replay from CUDA graphs: only on CUDA; there unless switched off."""
        return device.startswith("cuda") and self.cuda_graphs is not False

    def resolved_device(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def resolved_dtype(self, device: str) -> str:
        return self.dtype or ("float32" if device == "cpu" else "bfloat16")


def load_model(path: Path, device: str, dtype: str) -> tuple[Any, Any]:
    """(model, tokenizer) for a local Hugging Face folder, loaded once per process."""
    key = (str(path.resolve()), device, dtype)
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer
                from transformers.utils import logging as hf_logging
            except ImportError as exc:
                raise ModelError("the local backend needs the 'local' extra: pip install 'ragcache[local]'") from exc
            hf_logging.disable_progress_bar()
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
            except Exception as exc:
                raise ModelError(f"cannot load the model in {path}: {exc}") from exc
            model.eval()
            _MODELS[key] = (model, tokenizer)
        return _MODELS[key]


def model_fingerprint(path: Path, dtype: str) -> str:
    """Names the weights a KV was computed with (cheap: config, file sizes, first MiB of each weight file)."""
    parts = [content_hash((path / "config.json").read_bytes()), dtype]
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        with weights.open("rb") as f:
            parts += [weights.name, str(weights.stat().st_size), content_hash(f.read(_HEAD_BYTES))]
    return chain_hash(parts)


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Token ids that end an answer: the generation config's, the tokenizer's and ChatML's ``<|im_end|>``."""
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end, int) and end != tokenizer.unk_token_id:
        ids.add(end)
    return frozenset(ids)
