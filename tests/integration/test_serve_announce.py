"""What ``ragcache serve`` says at start (ServerState.announce): each corpus with its model id and
build, the API, dashboard and metrics URLs, and a stale build as a warning naming the fix."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ragcache.corpus.staleness import SourceChanges
from ragcache.server.state import ServerState


def test_start_lines_name_the_model_id_the_urls_and_a_stale_build(
    small_rag: Any, caplog: pytest.LogCaptureFixture
) -> None:
    state = ServerState.create(small_rag)
    small_rag.stale = SourceChanges(Path("corpora/small"), changed=("docs/faq/typing.md",))
    try:
        with caplog.at_level(logging.INFO, logger="ragcache.server"):
            state.announce("http://127.0.0.1:8123")
    finally:
        small_rag.stale = None  # the facade belongs to the session fixture
        state.warming.stop()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    infos = [m for level, m in lines if level == logging.INFO]
    warnings = [m for level, m in lines if level == logging.WARNING]
    assert any(f"as model 'small' (build {small_rag.corpus.root}" in m for m in infos), infos
    assert ("OpenAI-compatible API: http://127.0.0.1:8123/v1 (model = corpus name) · dashboard: "
            "http://127.0.0.1:8123/ · metrics: http://127.0.0.1:8123/metrics") in infos  # fmt: skip
    assert any("every 2s (also: POST /admin/reload, SIGHUP)" in m for m in infos), infos
    assert warnings == [
        "corpus 'small': corpora/small: the build is stale: 1 source file has changed since it was built "
        "(docs/faq/typing.md (edited)); answers use the old text until you run `ragcache build corpora/small`"
    ]
