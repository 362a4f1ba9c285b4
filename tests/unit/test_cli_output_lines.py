"""Issue 26: what the CLI prints stays readable: a note never glues onto the answer, the bench's row
labels are printed as written (``ragcache [first]`` is not rich markup), ``--help`` does not cut a command's
summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

NOTE_AFTER_ANSWER = """
import logging
from ragcache.cli.output import begin_answer, end_answer, quiet_libraries, write_answer
quiet_libraries()
begin_answer()
write_answer("SQLite is")
write_answer(" serverless.")
logging.getLogger("ragcache.cache.pricing").warning("no price for model 'x' (backend openai)")
end_answer()
"""


def test_a_note_logged_at_the_end_of_an_answer_goes_on_its_own_line() -> None:
    """stdout and stderr into one stream, as on a terminal: the answer's line is ended before the note."""
    out = subprocess.run([sys.executable, "-c", NOTE_AFTER_ANSWER], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, check=True, timeout=120).stdout  # fmt: skip
    assert out == "SQLite is serverless.\nnote: no price for model 'x' (backend openai)\n"


def test_the_bench_table_shows_first_and_repeat_row_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragcache.cli.bench import _print_summary
    from ragcache.cli.output import console

    def summary(strategy: str) -> SimpleNamespace:
        return SimpleNamespace(strategy=strategy, ttft_p50_s=0.5, ttft_p95_s=0.9, cached_ratio=0.9, hit_rate=1.0,
                               distinct_prefixes=1, evidence_recall=None)  # fmt: skip

    labels = ["ragcache", "ragcache [first]", "ragcache [repeat]"]
    result = SimpleNamespace(summaries=[summary(label) for label in labels], notes=[])
    monkeypatch.setattr(console, "_width", 160)  # wide enough that no label wraps
    with console.capture() as captured:
        _print_summary(result, Path("out"))
    text = captured.get()
    rows = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    assert rows == labels  # rich used to swallow "[first]" and "[repeat]" as markup: "ragcache" three times


@pytest.mark.parametrize("group", [[], ["bench"], ["cache"], ["model"]])
def test_help_lists_every_command_with_its_whole_summary_on_a_wide_terminal(group: list[str]) -> None:
    """click cut summaries at 80 columns ("build  Compile a corpus into deterministic, content-addressed...") and
    at the first period ("ttft  Median TTFT cold vs.")."""
    import typer
    from click.testing import CliRunner

    from ragcache.cli import app

    result = CliRunner().invoke(typer.main.get_command(app), [*group, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = result.output.split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert rows
    for row in rows:
        summary = row.split(maxsplit=1)[1]
        assert not summary.endswith("...") and summary.endswith((".", ")")), row
        assert not summary.endswith((" vs.", " e.g.", "(e.g.")), row
