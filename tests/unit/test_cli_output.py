"""The CLI's rendering of library progress callbacks and its quiet logging."""

from __future__ import annotations

import logging

import pytest

from ragcache.cli.output import _QUIET_ENV, ProgressReporter, quiet_libraries


def test_status_lines_wait_for_the_interval(capsys: pytest.CaptureFixture[str]) -> None:
    report = ProgressReporter(None, interval_s=3600)
    for done in range(5):
        report("embedding chunks", done, 4)
    assert capsys.readouterr().err == ""  # a step shorter than the interval prints nothing
    timing = report.stages["embedding chunks"]
    assert (timing.done, timing.total) == (4, 4) and timing.seconds >= 0


def test_status_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    report = ProgressReporter(None, interval_s=0)
    report("reading documents", 2, 6)
    report("warming prefixes", 1, 3)
    assert capsys.readouterr().err.splitlines() == ["reading documents: 2/6 (0s)", "warming prefixes: 1/3 (0s)"]


def test_quiet_libraries_hides_library_info_but_keeps_ragcache_warnings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RAGCACHE_LOG_LEVEL", raising=False)
    for name, value in _QUIET_ENV.items():  # undone after the test
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("bm25s").level)
    try:
        quiet_libraries()
        logging.basicConfig(level=logging.INFO)  # what llama_index's slides reader does on import
        logging.getLogger("faiss.loader").info("Loading faiss with AVX2 support.")
        logging.getLogger("bm25s").setLevel(logging.DEBUG)  # as bm25s does on import
        logging.getLogger("bm25s").debug("Building index from tokens")
        logging.getLogger("some.library").warning("advice nobody asked for")
        logging.getLogger("ragcache.router.index").warning("no matching router index")
        assert capsys.readouterr().err.splitlines() == ["note: no matching router index"]
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        logging.getLogger("bm25s").setLevel(saved[2])


def test_progress_lines_say_the_rate_and_what_is_left() -> None:
    from ragcache.cli.output import StageTiming, rate_and_eta

    assert rate_and_eta(StageTiming(started=0.0, last=10.0, done=400, total=1600)) == ", 40.0/s, ETA 0m30s"
    assert rate_and_eta(StageTiming(started=0.0, last=10.0, done=1600, total=1600)) == ", 160.0/s"
    assert rate_and_eta(StageTiming(started=0.0, last=0.0, done=0, total=10)) == ""


def test_on_a_terminal_one_live_line_shows_prefill_then_generation_until_the_answer_streams() -> None:
    """Issue 26 item 1: a TTY gets one updating line (a real rich status), with the rate and ETA once known."""
    import io
    import time

    from rich.console import Console

    from ragcache.cli.output import WAITING, TokenProgress

    status = Console(file=io.StringIO(), force_terminal=True).status(WAITING)
    shown = TokenProgress(status)
    shown.waiting()
    assert status.status == WAITING
    shown("prefill", 0, 3000)
    assert status.status == "prefill 0/3,000 tokens (0%)"
    time.sleep(0.02)
    shown("prefill", 1000, 3000)
    head, rate, eta = status.status.split(", ")
    assert head == "prefill 1,000/3,000 tokens (33%)" and rate.endswith(" tok/s") and eta.startswith("ETA ")
    shown("generate", 1, 16)
    assert status.status == "generate 1 tokens (limit 16)"
    shown.stop()  # the answer's first text: the line goes, later reports change nothing
    shown("generate", 2, 16)
    assert shown.stopped and status.status == "generate 1 tokens (limit 16)"
