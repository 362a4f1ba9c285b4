"""The package layering, checked on the source: typer/rich only in the CLI, no import upward.

Layers, top to bottom (a module may import its own layer or any below it):
cli → server/bench/integrations → app/conversation/conversation_store → router/cache → backends/corpus →
prompt/config/errors/hashing/models/lint.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ragcache"

LAYERS: dict[str, int] = {
    "cli": 5,
    "server": 4, "bench": 4, "integrations": 4,
    "app": 3, "conversation": 3, "conversation_store": 3,
    "router": 2, "cache": 2,
    "backends": 1, "corpus": 1, "lint": 1,  # lint reads corpus folders (corpus.spec, corpus.sources)
    "prompt": 0, "config": 0, "errors": 0, "hashing": 0, "models": 0, "text": 0, "cancel": 0, "progress": 0,
}  # fmt: skip

# Known upward imports in files other helpers are reworking under issue 10, as
# (importing module, imported top-level part). Each entry must still occur (see
# test_allowlist_is_current), so the list shrinks as they are fixed.
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(p for p in parts if p != "__init__"), path))
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Every ``ragcache.*`` module this file imports (TYPE_CHECKING and function-local included)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names if base == "ragcache"}
    return {name for name in found if name.startswith("ragcache.")}


def _part(module: str) -> str | None:
    """The top-level part of ragcache a module belongs to (None: the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _upward() -> set[tuple[str, str]]:
    bad = set()
    for module, path in _modules():
        own = _part(module)
        if own is None:  # ragcache/__init__.py: the lazy public API, above everything
            continue
        assert own in LAYERS, f"{path}: top-level part {own!r} has no layer; add it to LAYERS"
        for imported in _imports(path, module):
            other = _part(imported)
            if other in LAYERS and LAYERS[other] > LAYERS[own]:
                bad.add((module, other))
    return bad


def test_no_module_imports_a_layer_above_it() -> None:
    violations = sorted(_upward() - ALLOWED_UPWARD)
    assert not violations, "upward imports (module, imported part): " + ", ".join(map(str, violations))


def test_allowlist_is_current() -> None:
    stale = sorted(ALLOWED_UPWARD - _upward())
    assert not stale, f"fixed upward imports still allowlisted, drop them: {stale}"


def _third_party(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and not node.level:
        return [node.module or ""]
    return []


def test_typer_and_rich_only_in_the_cli() -> None:
    offenders = []
    for module, path in _modules():
        if _part(module) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = [n for n in _third_party(node) if n.split(".")[0] in ("typer", "rich")]
            offenders += [f"{path.relative_to(PACKAGE.parent)}: {n}" for n in names]
    assert not offenders, "typer/rich imported outside ragcache/cli: " + "; ".join(offenders)
