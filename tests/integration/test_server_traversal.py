"""Corpus names from URLs never reach the file system: traversal attempts on
``/v1/corpora/{name}``, the chat ``model`` and ``/v1/ask``'s ``corpus`` get a
404 (or 400), and — watched through Python's audit hooks (PEP 578) — the
process opens or lists no file while answering them.

The app is the real one over corpora/small compiled; its backend is ``openai``
pointed at a closed port, which these requests never reach (no fake needed).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from server_harness import ROOT, free_port

from ragcache.app import RagCache
from ragcache.config import BackendConfig, CacheConfig, Config

PATHS = [
    "/v1/corpora/..%2F..%2F..%2Fetc%2Fpasswd",
    "/v1/corpora/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/v1/corpora/%252e%252e%252fetc%252fpasswd",
    "/v1/corpora/%2Fetc%2Fpasswd",
    "/v1/corpora/..",
    "/v1/corpora/%00",
    "/v1/corpora/small%00.json",
    "/v1/corpora/manifest.json",
]
NAMES = [
    "../../../etc/passwd",
    "/etc/passwd",
    "small/../small",
    "small\x00",
    "..",
    "~root",
    "C:\\Windows\\win.ini",
    ".ragcache/build/manifest.json",
]
_opened: list[str] | None = None
_ALLOWED = tuple(str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, ROOT / "ragcache"})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _opened is not None and event in {"open", "os.listdir", "os.scandir", "os.chdir"} and args:
        path = args[0]
        if isinstance(path, str | bytes | Path):
            _opened.append(f"{event} {path!s}")


sys.addaudithook(_audit)  # hooks cannot be removed; this one records only while a test asks it to


def file_access(client: TestClient, method: str, url: str, **kw: Any) -> tuple[Any, list[str]]:
    """The response, and every file the process opened or listed outside Python itself while answering."""
    global _opened
    _opened = []
    try:
        response = client.request(method, url, **kw)
    finally:
        seen, _opened = _opened, None
    outside = [entry for entry in seen if not entry.split(" ", 1)[1].startswith(_ALLOWED)]
    return response, outside


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from ragcache.corpus.compile import build_corpus
    from ragcache.server.app import create_app

    build = tmp_path_factory.mktemp("traversal") / "build"
    build_corpus(ROOT / "corpora" / "small", build)
    backend = BackendConfig(
        kind="openai", model="gpt-4o-mini", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0
    )
    config = Config(corpus=build, build_dir=build, backend=backend, cache=CacheConfig(warm_on_start=False))
    with TestClient(create_app(RagCache.from_config(config)), raise_server_exceptions=False) as test_client:
        assert test_client.get("/v1/corpora/small").status_code == 200  # the real lookup works
        yield test_client


def assert_refused(response: Any) -> None:
    assert response.status_code in (400, 404), response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert "root:" not in response.text


@pytest.mark.parametrize("path", PATHS)
def test_names_in_the_url_path(client: TestClient, path: str) -> None:
    response, opened = file_access(client, "GET", path)
    assert_refused(response)
    assert opened == []


@pytest.mark.parametrize("name", NAMES)
def test_names_in_the_model_and_corpus_fields(client: TestClient, name: str) -> None:
    chat = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
    response, opened = file_access(client, "POST", "/v1/chat/completions", json=chat)
    assert_refused(response)
    # a NUL is refused as text before any lookup (docs/reliability.md, hostile probe); any other name is unknown
    assert response.json()["error"]["code"] == ("invalid_text" if "\x00" in name else "model_not_found")
    assert opened == []
    response, opened = file_access(client, "POST", "/v1/ask", json={"question": "hi", "corpus": name})
    assert_refused(response)
    assert opened == []


def test_the_audit_hook_does_see_file_reads(client: TestClient, tmp_path: Path) -> None:
    """The check above could fail: a read the app makes is recorded."""
    global _opened
    _opened = []
    try:
        (tmp_path / "probe.txt").write_text("x")
    finally:
        seen, _opened = _opened, None
    assert any("probe.txt" in entry for entry in seen)
