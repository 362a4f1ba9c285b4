"""Issue 26: a new user's first hour, as they run it: progress on stderr, a KV cache that outlives the
process (and ``ragcache cache info``/``clear``), and ``warm`` that makes the next ``ask`` cached.

Real ``ragcache`` processes on the local model over a two-document corpus of ~800 tokens (one
prefill chunk: each cold process costs seconds). The suite points ``RAGCACHE_KV_DIR`` at its own
folder (tests/conftest.py), emptied after each test, so every test starts cold.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORDS = [
    "lantern",
    "river",
    "copper",
    "meadow",
    "signal",
    "harbor",
    "velvet",
    "orbit",
    "cedar",
    "quartz",
    "beacon",
    "ember",
    "willow",
    "summit",
]
QUESTION = "What is copper?"


def ragcache(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ragcache.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see the local_model fixture
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory, local_model: Path) -> Path:
    """Two made-up notes (deterministic words), built once for the module."""
    from ragcache.corpus.compile import build_corpus

    corpus = tmp_path_factory.mktemp("tiny") / "tiny"
    (corpus / "docs").mkdir(parents=True)
    (corpus / "corpus.yaml").write_text("name: tiny\ninstructions: Answer from the notes below.\n")
    for n in range(2):
        paragraphs = [" ".join(WORDS[(n + p * 7 + i * 3) % len(WORDS)] for i in range(50)) for p in range(6)]
        (corpus / "docs" / f"note{n}.md").write_text(f"# Note {n}\n\n" + ".\n\n".join(paragraphs) + ".\n")
    out = corpus / ".ragcache" / "build"
    build_corpus(corpus, out)
    return out


def _ask_json(build: Path) -> dict:
    result = ragcache("ask", "--json", "--corpus", str(build), "--max-tokens", "4", QUESTION)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ask_shows_the_prefill_progress_on_stderr_when_not_a_terminal(tiny_build: Path) -> None:
    result = ragcache("ask", "--corpus", str(tiny_build), "--max-tokens", "4", QUESTION)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "waiting for first token…"
    prefill = [line for line in lines if line.startswith("prefill ")]
    assert re.fullmatch(r"prefill 0/([\d,]+) tokens \(0%\)", prefill[0]), prefill
    total = prefill[0].split("/")[1].split()[0]
    assert re.fullmatch(rf"prefill {total}/{total} tokens \(100%\), [\d,]+ tok/s", prefill[-1]), prefill
    assert lines[-1].startswith("cache: 0/")  # then what the cache did, on its own line
    assert result.stdout.strip() and "prefill" not in result.stdout  # the answer alone on stdout


def test_a_second_ask_process_reads_the_prefix_from_disk_and_cache_clear_empties_it(tiny_build: Path) -> None:
    first = _ask_json(tiny_build)["usage"]
    assert first["cached_tokens"] == 0 and first["cache_write_tokens"] > 500
    second = _ask_json(tiny_build)["usage"]
    assert second["cached_tokens"] / second["input_tokens"] >= 0.9, second

    info = ragcache("cache", "info")
    assert info.returncode == 0 and "1 file(s)" in info.stdout and os.environ["RAGCACHE_KV_DIR"] in info.stdout
    cleared = ragcache("cache", "clear")
    assert cleared.returncode == 0 and "removed 1 file(s)" in cleared.stdout, cleared.stdout
    assert not list(Path(os.environ["RAGCACHE_KV_DIR"]).glob("*.safetensors"))
    assert _ask_json(tiny_build)["usage"]["cached_tokens"] == 0  # cold again


def test_warm_on_the_local_backend_makes_the_next_ask_process_cached(tiny_build: Path) -> None:
    warmed = ragcache("warm", "--corpus", str(tiny_build), "--no-verify", "--json")
    assert warmed.returncode == 0, warmed.stderr
    assert [json.loads(line)["status"] for line in warmed.stdout.splitlines()] == ["warmed"]
    assert "prefill 0/" in warmed.stderr  # the warm-up's prefill shows too
    usage = _ask_json(tiny_build)["usage"]
    assert usage["cached_tokens"] / usage["input_tokens"] >= 0.9, usage


# --- output: one error prefix, exit codes, help (issue 26 item 6) ---------------------------------


def test_a_port_in_use_exits_with_its_own_code_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = ragcache("serve", "--host", "127.0.0.1", "--port", str(port), timeout=120)
    assert result.returncode == 7, result.stderr  # not 3, the corpus-error code
    assert result.stderr.startswith("error: PortInUseError: ") and f"port {port} on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_share_the_error_prefix_and_help_shows_flags_and_exit_codes() -> None:
    bad = ragcache("ask", "--max-tokens", "many", "hi")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: Invalid value for '--max-tokens'") and "ragcache ask --help" in bad.stderr
    warm = ragcache("warm", "--help").stdout
    assert "<bool>" not in warm and "--verify / --no-verify" in warm and "--max-prefixes" in warm
    top = ragcache("--help").stdout
    assert "Exit codes:" in top and "7    serve: the port is already in use" in top and "3    corpus error" in top


def test_eval_router_without_qa_on_a_corpus_without_qa_jsonl_names_the_path(tmp_path: Path) -> None:
    corpus = tmp_path / "mine"
    (corpus / "docs").mkdir(parents=True)
    (corpus / "corpus.yaml").write_text("name: mine\ninstructions: Answer.\n")
    result = ragcache("eval-router", "--corpus", str(corpus))
    assert result.returncode == 2
    assert f"QA file {corpus / 'qa.jsonl'} does not exist" in result.stderr and "--qa" in result.stderr
    assert "Traceback" not in result.stderr and "sqlite_qa" not in result.stderr  # no fallback to another set


def test_lint_groups_its_findings_by_kind_with_counts_and_lists_all_on_request(tmp_path: Path) -> None:
    corpus = tmp_path / "dated"
    (corpus / "docs").mkdir(parents=True)
    (corpus / "corpus.yaml").write_text("name: dated\ninstructions: Answer.\n")
    for n in range(5):
        (corpus / "docs" / f"release{n}.md").write_text(f"# Release {n}\n\nReleased on 2020-01-0{n + 1}.\n")
    grouped = ragcache("lint", str(corpus))
    assert grouped.returncode == 0, grouped.stderr
    lines = grouped.stdout.splitlines()
    assert lines[0].startswith("warning [date]: 5 in 5 file(s): date: ")
    assert len([line for line in lines if line.startswith("  ") and "release" in line]) == 3
    assert "  … 2 more (--all lists every one)" in lines and lines[-1] == "0 error(s), 5 warning(s)"
    every = ragcache("lint", "--all", str(corpus)).stdout.splitlines()
    assert [line.split("/")[-1] for line in every if "release" in line] == [
        f"release{n}.md:3: '2020-01-0{n + 1}'" for n in range(5)
    ]


# --- the bench: an ETA while it runs, partial results on Ctrl-C (issue 26 item 7) ---------------


def test_bench_interrupted_by_ctrl_c_writes_the_requests_finished_so_far(tmp_path: Path) -> None:
    import signal

    root = Path(__file__).resolve().parents[2]
    build = tmp_path / "build"
    assert ragcache("build", str(root / "corpora" / "small"), "--out", str(build)).returncode == 0
    config = tmp_path / "bench.yaml"
    config.write_text(f"corpus: {root / 'corpora' / 'small'}\nbuild_dir: {build}\nbackend: {{kind: local}}\n")
    made = ragcache("bench", "make-workload", "--qa", str(root / "corpora" / "small" / "qa.jsonl"), "-n", "8",
                    "--seed", "1", "--out", str(tmp_path / "w.jsonl"))  # fmt: skip
    assert made.returncode == 0, made.stderr
    cmd = [sys.executable, "-m", "ragcache.cli", "bench", "--config", str(config), "--workload",
           str(tmp_path / "w.jsonl"), "--out", str(tmp_path / "out"), "--strategies", "ragcache,naive-rag",
           "--max-tokens", "2", "--naive-budget", "300"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bench = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    assert bench.stderr is not None
    for line in bench.stderr:  # status lines: one per answer, each with an ETA once it can tell
        # under load one run got a status line merged with another on one line (cause not found): the text
        # after a carriage return is kept, and the line is matched anywhere, not only at its start
        lines.append(line.rstrip("\n").rsplit("\r", 1)[-1])
        if "request 2/4 " in line:  # request 1 answered by both strategies: interrupt
            bench.send_signal(signal.SIGINT)
            break
    out, err = bench.communicate(timeout=300)
    assert bench.returncode == 130, "\n".join(lines) + err
    assert re.search(r"request 1/4 \S+ done \(2/8, ETA [\dms]+\)", "\n".join(lines[-2:])), lines
    first_answer = next(i for i, line in enumerate(lines) if line.startswith("request "))
    assert "loading model and corpus, warming prefixes…" in lines[:first_answer]  # the silent start, said
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    whole = len({r["index"] for r in results["records"]})  # 1, or 2 if the second answer beat the signal
    assert whole in (1, 2) and {r["index"] for r in results["records"]} == set(range(whole))
    assert len(results["records"]) == 2 * whole  # a request one strategy did not finish is left out
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"Ctrl-C after {whole} of 4 measured requests: partial results" in report
    assert "ragcache" in out and f"interrupted: Ctrl-C after {whole} of 4" in err
