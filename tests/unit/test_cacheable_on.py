"""Issue 26: "cacheable on" in ``build``/``inspect`` uses the minimum the backend itself plans with, for
the model each shipped config names, not a vendor-wide figure (a ~910-token block is not cacheable on
anthropic when configs/anthropic.yaml's model needs 1024). No request leaves the machine: the vendor
backends are only constructed (with a placeholder key) to read their declared capabilities."""

from __future__ import annotations

import pytest

from ragcache.backends import create_backend
from ragcache.cli.corpus import SHIPPED_CONFIGS, cache_minimums, cacheable_on
from ragcache.config import load_config


def test_each_vendor_figure_is_what_its_shipped_config_backend_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(name, "placeholder")  # the constructors read a key; nothing is sent
    minimums = cache_minimums()
    vendors = {name: m for name, m in minimums.items() if m.model}
    assert set(vendors) == {"anthropic", "openai", "gemini"}
    for vendor, minimum in vendors.items():
        config = load_config(SHIPPED_CONFIGS / f"{vendor}.yaml")
        assert minimum.model == config.backend.model
        declared = create_backend(config.backend, config.cache).capabilities.min_cacheable_tokens
        assert minimum.tokens == declared, vendor


def test_a_910_token_block_is_not_cacheable_on_anthropic_when_its_model_needs_more() -> None:
    needed = cache_minimums()["anthropic"].tokens
    assert needed > 910
    assert "anthropic" not in cacheable_on(910)
    assert cacheable_on(910)[:2] == ["local", "vllm"] and "anthropic" in cacheable_on(needed)


def test_the_readme_quotes_the_minimums_build_prints() -> None:
    """The issue found README's thresholds differing from ``build``'s; the README sentence is checked against them."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    readme = readme[readme.index("`build` prints a summary") :].split("\n\n", 1)[0]  # that paragraph
    found = re.findall(r"(\w+)\s+\(([\w.-]+)\)\s+(\d+)", readme)  # name (model) tokens
    quoted = {name: (model, int(tokens)) for name, model, tokens in found}
    for name, minimum in cache_minimums().items():
        if minimum.model:
            assert quoted.get(name) == (minimum.model, minimum.tokens), name
    assert re.search(rf"local {cache_minimums()['local'].tokens},\s+vllm {cache_minimums()['vllm'].tokens} ", readme)
