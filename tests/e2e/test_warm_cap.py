"""``ragcache warm`` respects the warm-set cap (issue 11 must-show).

corpora/sqlite's router can emit thousands of prefixes (every block and every
pair); with a cap of 16, ``ragcache warm`` must send at most 32 requests (each
prefix once, and once more to verify it). The backend is the real local
engine; a counting wrapper around its request methods counts what it is sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]


def test_warm_with_a_cap_of_16_sends_at_most_32_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_model: Path
) -> None:
    from ragcache.backends.local.engine import LocalBackend
    from ragcache.cli import app
    from ragcache.corpus.compile import build_corpus

    build = tmp_path / "build"
    build_corpus(ROOT / "corpora" / "sqlite", build)  # no index: warming needs none
    config = tmp_path / "warm.yaml"
    config.write_text(
        f"corpus: {ROOT / 'corpora' / 'sqlite'}\nbuild_dir: {build}\nbackend: {{kind: local}}\n"
        f"cache: {{kv_budget_mb: 4096, traffic_dir: {tmp_path / 'traffic'}}}\n",
        encoding="utf-8",
    )
    sent: list[str] = []
    for method in ("warm", "generate", "stream"):
        real = getattr(LocalBackend, method)

        def counted(self: Any, *args: Any, _real: Any = real, _name: str = method, **kw: Any) -> Any:
            sent.append(_name)
            return _real(self, *args, **kw)

        monkeypatch.setattr(LocalBackend, method, counted)
    result = CliRunner().invoke(app, ["warm", "--config", str(config), "--max-prefixes", "16", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert 0 < len(rows) <= 16
    assert all(row["status"] == "cached" for row in rows), rows
    assert len(sent) <= 32 and len(sent) == 2 * len(rows), sent
