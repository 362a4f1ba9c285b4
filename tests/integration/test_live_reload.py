"""A running ``ragcache serve --corpus`` picks up a rebuild (server/reload.py), over the real local model.

One server process (uvicorn, two tiny corpora given with ``--corpus``, the manifest polled every
0.3 s) serves a client that sends requests without a pause while one corpus is edited and rebuilt:
no request fails, and the answers' fingerprint switches to the new build without a restart.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from ragcache.bench.loadserver import launch
from ragcache.corpus.compile import build_corpus
from tests.server_harness import API_KEY, ServerProcess, free_port, metric_value

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def write_corpus(root: Path, name: str, docs: dict[str, str]) -> Path:
    """A corpus folder with ``corpus.yaml`` and ``docs/``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.yaml").write_text(f"name: {name}\ntitle: {name} notes\n", encoding="utf-8")
    for rel, text in docs.items():
        path = root / "docs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path, Path]]:
    tmp = tmp_path_factory.mktemp("live")
    widgets = write_corpus(tmp / "widgets", "widgets", {"intro.md": "# Widgets\n\nA widget is blue.\n"})
    gadgets = write_corpus(tmp / "gadgets", "gadgets", {"intro.md": "# Gadgets\n\nA gadget is red.\n"})
    for corpus in (widgets, gadgets):
        build_corpus(corpus)
    config = tmp / "serve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "backend": {"kind": "local", "max_output_tokens": 2},
                "cache": {"warm_on_start": False, "keep_warm": False, "traffic_dir": str(tmp / "traffic")},
                "server": {"reload_poll_s": 0.3},
            }
        ),
        encoding="utf-8",
    )
    port = free_port()
    command = [sys.executable, "-m", "ragcache.cli", "serve", "--config", str(config), "--port", str(port),
               "--corpus", str(widgets), "--corpus", str(gadgets)]  # fmt: skip
    env = {**os.environ, "RAGCACHE_API_KEYS": API_KEY, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = launch(command, port, API_KEY, tmp / "server.log", env=env, cwd=tmp, timeout_s=300,
                    server_type=ServerProcess)  # fmt: skip
    try:
        yield server, widgets, gadgets
    finally:
        server.stop()


def _ask(client: httpx.Client, base: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "What colour is it?"}], "max_tokens": 2}
    return client.post(f"{base}/v1/chat/completions", json=body, headers=HEADERS, timeout=60)


def test_serve_names_each_corpus_its_model_id_and_the_urls(live: tuple[ServerProcess, Path, Path]) -> None:
    server, widgets, gadgets = live
    log = server.log_tail(20_000)
    assert f"serving corpus {widgets} as model 'widgets'" in log
    assert f"serving corpus {gadgets} as model 'gadgets'" in log
    base = server.base_url
    assert f"{base}/v1 (model = corpus name) · dashboard: {base}/ · metrics: {base}/metrics" in log
    models = httpx.get(f"{base}/v1/models", headers=HEADERS).json()
    assert [m["id"] for m in models["data"]] == ["widgets", "gadgets"]
    with httpx.Client() as client:
        assert _ask(client, base, "gadgets").json()["ragcache"]["corpus"] == "gadgets"


def test_a_rebuild_reaches_the_running_server_without_a_failed_request(
    live: tuple[ServerProcess, Path, Path],
) -> None:
    server, widgets, _ = live
    base = server.base_url
    before = httpx.get(f"{base}/v1/corpora/widgets", headers=HEADERS).json()["fingerprint"]
    session = {"question": "What colour is a widget?", "corpus": "widgets", "max_tokens": 2, "new_session": True}
    session_id = httpx.post(f"{base}/v1/ask", json=session, headers=HEADERS, timeout=60).json()["session_id"]
    seen: list[tuple[int, str]] = []  # (status, fingerprint) in the order answered
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                response = _ask(client, base, "widgets")
                fingerprint = response.json().get("ragcache", {}).get("fingerprint", "") if response.is_success else ""
                seen.append((response.status_code, fingerprint))

    thread = threading.Thread(target=client_loop)
    thread.start()
    try:
        while len(seen) < 1:
            time.sleep(0.05)
        (widgets / "docs" / "intro.md").write_text("# Widgets\n\nA widget is green now.\n", encoding="utf-8")
        after = build_corpus(widgets).corpus.fingerprint
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(fp == after for _, fp in seen) < 2:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=120)
    assert after != before
    assert [status for status, _ in seen if status != 200] == []
    fingerprints = [fp for _, fp in seen]
    switch = fingerprints.index(after)  # raises if the server never switched
    assert switch > 0 and set(fingerprints[:switch]) == {before} and set(fingerprints[switch:]) == {after}
    again = {"question": "And now?", "corpus": "widgets", "max_tokens": 2, "session_id": session_id}
    continued = httpx.post(f"{base}/v1/ask", json=again, headers=HEADERS, timeout=60)
    assert continued.status_code == 200, continued.text  # the session store outlives the reload (no 404)
    assert f"corpus 'widgets': reloaded build {before[:12]} -> {after[:12]}" in server.log_tail(20_000)
    metrics = httpx.get(f"{base}/metrics", headers=HEADERS).text
    assert metric_value(metrics, "ragcache_corpus_build_info", corpus="widgets", fingerprint=after) == 1
    assert metric_value(metrics, "ragcache_corpus_build_info", corpus="widgets", fingerprint=before) == 0
    assert metric_value(metrics, "ragcache_corpus_reloads_total", corpus="widgets", outcome="reloaded") == 1


def test_admin_reload_needs_the_key_and_reports_each_corpus(live: tuple[ServerProcess, Path, Path]) -> None:
    server, _, _ = live
    assert httpx.post(f"{server.base_url}/admin/reload").status_code == 401
    reply = httpx.post(f"{server.base_url}/admin/reload", headers=HEADERS, timeout=60).json()
    assert {(r["corpus"], r["status"]) for r in reply["data"]} == {("widgets", "unchanged"), ("gadgets", "unchanged")}


def test_a_broken_rebuild_is_reported_and_the_old_build_keeps_serving(
    live: tuple[ServerProcess, Path, Path],
) -> None:
    server, _, gadgets = live
    base = server.base_url
    served = httpx.get(f"{base}/v1/corpora/gadgets", headers=HEADERS).json()["fingerprint"]
    manifest = gadgets / ".ragcache" / "build" / "manifest.json"
    original = manifest.read_text(encoding="utf-8")
    broken = json.loads(original)
    broken["fingerprint"], broken["blocks"][0]["sha256"] = "0" * 64, "f" * 64  # a block file that is not there
    try:
        manifest.write_text(json.dumps(broken), encoding="utf-8")
        os.kill(server.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "the new build did not load" not in server.log_tail(20_000) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "corpus 'gadgets': the new build did not load, still serving" in server.log_tail(20_000)
        with httpx.Client() as client:
            response = _ask(client, base, "gadgets")
        assert response.status_code == 200 and response.json()["ragcache"]["fingerprint"] == served
    finally:
        manifest.write_text(original, encoding="utf-8")
