#!/usr/bin/env python3
"""What the GPU machine needs to import ragcache from a plain source tree (docs/bench/gpu, session 4).

    python3 scripts/gpu_shims.py DIR      # then put DIR last on PYTHONPATH

The GPU machine cannot install ragcache (no package index), so two things a ``pip install``
would provide are written into ``DIR``:

- ``ragcache-<version>.dist-info`` with the entry points of ``pyproject.toml``: the backend
  registry reads the ``ragcache.backends`` and ``ragcache.vendors`` groups, and a source tree
  alone has none ("unknown backend kind 'vllm'; valid kinds:" cost one device call);
- a stand-in ``llama_index`` package, only where llama-index-core is not importable: the corpus
  modules import it at import time, but the GPU bench opens corpora built beforehand and never
  reads or splits a source, so its classes raise if they are ever used.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STANDIN = {
    "__init__.py": '"""Stand-in for llama-index-core (scripts/gpu_shims.py): building is not done here."""\n',
    "core/_missing.py": (
        "class Missing:\n"
        "    def __init__(self, *args, **kwargs):\n"
        '        raise RuntimeError("llama-index-core is not installed here (scripts/gpu_shims.py stand-in)")\n'
    ),
    "core/__init__.py": "from llama_index.core._missing import Missing as SimpleDirectoryReader\n",
    "core/readers/__init__.py": "",
    "core/readers/base.py": "class BaseReader:\n    pass\n",
    "core/schema.py": "from llama_index.core._missing import Missing as Document\n",
    "core/node_parser.py": "from llama_index.core._missing import Missing as SentenceSplitter\n",
}


def entry_points_text(pyproject: Path) -> tuple[str, str, str]:
    """(name, version, ``entry_points.txt``) from ``[project]`` of ``pyproject``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
    text = "".join(
        f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in sorted(items.items())) + "\n"
        for group, items in groups.items()
        if items
    )
    return project["name"], project["version"], text


def write_shims(target: Path, pyproject: Path = ROOT / "pyproject.toml", standin: bool | None = None) -> list[str]:
    """Write the dist-info (and the stand-in where needed) under ``target``; the paths written."""
    name, version, text = entry_points_text(pyproject)
    info = target / f"{name}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(text, encoding="utf-8")
    written = [str(info)]
    if standin if standin is not None else importlib.util.find_spec("llama_index") is None:
        for rel, body in STANDIN.items():
            path = target / "llama_index" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
        written.append(str(target / "llama_index"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    for path in write_shims(args.target):
        print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
