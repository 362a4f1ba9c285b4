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
