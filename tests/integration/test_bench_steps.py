"""``python -m ragcache.bench.steps`` end to end on the real local model (a small run: 2 rows, 2 steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragcache.bench.steps import main


def test_the_step_bench_measures_each_variant_in_its_own_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "steps.json"
    assert main(["--rows", "2", "--steps", "2", "--rounds", "1", "--variants", "mkl", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| engine |" in table and "| mkl |" in table and "x) |" in table  # the variant against the engine
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"engine", "mkl"}  # the engine as it ships always runs, for the ratios
    for variant in results.values():
        assert set(variant) == {"prefill_n", "step_n", "prefill_1", "step_1"}
        assert all(len(values) == 1 and 0 < values[0] < 60 for values in variant.values())


def test_an_unknown_variant_is_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--variants", "engine,turbo"])
    assert "unknown variants ['turbo']" in capsys.readouterr().err
