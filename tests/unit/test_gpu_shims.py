"""scripts/gpu_shims.py: what the GPU machine needs to import ragcache from a plain source tree.

Each check runs a fresh interpreter with ``-S`` (no site-packages, so not this checkout's own
install) and only the shim folder on ``PYTHONPATH``, as the GPU machine sees it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from gpu_shims import ROOT, write_shims


def _run(folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(folder)}
    return subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_the_entry_points_are_those_of_pyproject(tmp_path: Path) -> None:
    write_shims(tmp_path, standin=False)
    code = ("from importlib.metadata import entry_points\n"
            "for g in ('ragcache.backends', 'ragcache.vendors'):\n"
            "    print(g, sorted(f'{e.name}={e.value}' for e in entry_points(group=g)))")  # fmt: skip
    out = _run(tmp_path, code)
    assert out.returncode == 0, out.stderr
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["entry-points"]
    for group in ("ragcache.backends", "ragcache.vendors"):
        expected = sorted(f"{k}={v}" for k, v in declared[group].items())
        assert f"{group} {expected}" in out.stdout.splitlines()
    assert "vllm=ragcache.backends.vllm.backend:create" in out.stdout
    assert not (tmp_path / "llama_index").exists()


def test_the_llama_index_stand_in_imports_and_refuses_to_be_used(tmp_path: Path) -> None:
    write_shims(tmp_path, standin=True)
    code = ("from llama_index.core import SimpleDirectoryReader\n"
            "from llama_index.core.readers.base import BaseReader\n"
            "from llama_index.core.schema import Document\n"
            "from llama_index.core.node_parser import SentenceSplitter\n"
            "class Reader(BaseReader):\n    pass\n"
            "Reader()\n"
            "SimpleDirectoryReader('docs')\n")  # fmt: skip
    out = _run(tmp_path, code)
    assert out.returncode == 1
    assert "RuntimeError: llama-index-core is not installed here" in out.stderr
