"""The real `ragcache build / inspect / lint / model install` commands on the sample corpus."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "corpora" / "small"


def ragcache(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ragcache.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


def assert_quiet(result: subprocess.CompletedProcess[str]) -> None:
    """No library log lines or warnings in what a user sees (issue 10: quiet, honest output)."""
    for line in (result.stdout + result.stderr).splitlines():
        assert "- INFO -" not in line and "WARNING" not in line and "Warning" not in line, line


@pytest.fixture
def small_copy(tmp_path: Path) -> Path:
    target = tmp_path / "small"
    shutil.copytree(SMALL, target, ignore=shutil.ignore_patterns(".ragcache"))
    return target


def test_build_json_small_corpus_fits_full_context(small_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "build"
    result = ragcache("build", str(small_copy), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    blocks = {b["id"]: b for b in summary["blocks"]}
    expected = {"instructions", "examples", "category:overview", "category:datatypes", "category:faq", "full"}
    assert expected <= set(blocks)
    assert 2500 <= blocks["full"]["tokens"] <= 6000  # fits the 8k local model whole
    assert blocks["full"]["cacheable_on"][:2] == ["local", "vllm"]
    assert summary["documents"] == 6 and summary["tokenizer"] == "smollm2"
    assert summary["docs_per_s"] > 0 and summary["tokens_per_s"] > 0
    manifest = (out / "manifest.json").read_bytes()
    again = ragcache("build", str(small_copy), "--out", str(out), "--json")
    assert again.returncode == 0 and (out / "manifest.json").read_bytes() == manifest


def test_build_table_then_inspect(small_copy: Path) -> None:
    result = ragcache("build", str(small_copy))
    assert result.returncode == 0, result.stderr
    assert "category:faq" in result.stdout and "docs/s" in result.stdout and "tokens/s" in result.stdout
    assert "router index: " in result.stdout  # embedded at N chunks/s, or reused
    assert_quiet(result)
    shown = ragcache("inspect", str(small_copy), "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["name"] == "small"
    table = ragcache("inspect", str(small_copy / ".ragcache" / "build"))
    assert table.returncode == 0 and "full" in table.stdout


def test_inspect_unbuilt_corpus_says_run_build(small_copy: Path) -> None:
    result = ragcache("inspect", str(small_copy))
    assert result.returncode == 3
    assert "ragcache build" in result.stderr


def test_broken_document_exit_code_names_file(small_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "build"
    assert ragcache("build", str(small_copy), "--out", str(out)).returncode == 0
    before = (out / "manifest.json").read_bytes()
    (small_copy / "docs/faq/broken.md").write_bytes(b"\xc3\x28 invalid")
    result = ragcache("build", str(small_copy), "--out", str(out))
    assert result.returncode == 3
    assert "broken.md" in result.stderr and "UTF-8" in result.stderr
    assert (out / "manifest.json").read_bytes() == before


def test_lint_exit_codes(small_copy: Path) -> None:
    clean = ragcache("lint", str(small_copy))
    assert clean.returncode == 0, clean.stdout
    assert "0 error(s)" in clean.stdout
    (small_copy / "docs/faq/export.md").write_text("# Export\n\nGenerated on 2024-02-03 04:05:06\n")
    dirty = ragcache("lint", str(small_copy))
    assert dirty.returncode == 1
    assert dirty.stdout.startswith("error [") and "export.md:3: 'Generated on" in dirty.stdout  # grouped by kind


def test_model_install_prints_the_model_folder() -> None:
    result = ragcache("model", "install")
    assert result.returncode == 0, result.stderr
    assert (Path(result.stdout.strip()) / "tokenizer.json").exists()


def test_build_prints_a_summary_changes_and_skipped_files(small_copy: Path) -> None:
    """Output that does not grow with the blocks: per-category rows, largest blocks, changes, skipped files."""
    first = ragcache("build", str(small_copy), "--no-index")
    assert first.returncode == 0, first.stderr
    assert "largest blocks: " in first.stdout and "first build here" in first.stdout
    assert "sha256" not in first.stdout  # the per-block table is behind --blocks
    (small_copy / "docs/faq/notes.docx").write_bytes(b"PK\x03\x04 not a supported document")
    faq = small_copy / "docs/faq/typing.md"
    faq.write_text(faq.read_text(encoding="utf-8") + "\nOne more line.\n", encoding="utf-8")
    second = ragcache("build", str(small_copy), "--no-index", "--changes")
    assert second.returncode == 0, second.stderr
    assert "2 changed (0 added, 2 changed, 0 removed)" in second.stdout  # its block and full
    assert "changed: category:faq, full" in second.stdout
    assert "skipped docs/faq/notes.docx: unsupported type .docx" in second.stdout
    table = ragcache("build", str(small_copy), "--no-index", "--blocks", "--retopic")
    assert table.returncode == 0 and "sha256" in table.stdout
    assert "--retopic: topics clustered afresh): 0 changed" in table.stdout
