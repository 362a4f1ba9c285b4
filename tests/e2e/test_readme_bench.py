"""README's bench command is the laptop-sized one (issue 26 item 7): its config is the small corpus on the
local backend, and its workload line, run as written, makes the 8 questions the text describes.

The bench itself is not run here (minutes of CPU prefill); tests/e2e/test_first_hour.py runs a smaller
bench on the same corpus and interrupts it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from ragcache.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def bench_commands() -> list[list[str]]:
    """The ``ragcache`` command lines of the first fenced block under README's bench heading."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Bench: ") :]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line.split(".venv/bin/ragcache ", 1)[1]) for line in block.splitlines() if line.strip()]


def test_the_readme_bench_runs_the_small_corpus_on_the_local_backend(tmp_path: Path) -> None:
    build, make, bench, _render = bench_commands()
    assert build == ["build", "corpora/small"]
    config = load_config(ROOT / bench[bench.index("--config") + 1])
    assert config.backend.kind == "local" and ROOT / config.resolved_corpus() == ROOT / "corpora" / "small"

    out = tmp_path / "w.jsonl"
    make[make.index("--out") + 1] = str(out)
    done = subprocess.run([sys.executable, "-m", "ragcache.cli", *make], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    questions = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(questions) == 8 and all(q["gold_doc_ids"] for q in questions)
    assert bench[bench.index("--workload") + 1] == "w.jsonl"
