"""A real ``ragcache serve`` session that uses secrets, and every byte it let out.

The server (uvicorn, its own process) runs with client API keys, a vendor key
in ``OPENAI_API_KEY`` and an unrelated ``ANTHROPIC_API_KEY`` in its environment,
``server.protect_metrics`` and ``server.rate_limit_per_min`` on. Its backend is
``openai`` pointed at a fake of the hosted OpenAI API (the one fake here: a
local HTTP server that refuses every key with 401 and, worse than OpenAI,
quotes the whole key it received). The session: missing and wrong keys, the
right key, answers that fail on the vendor's auth, malformed bodies, path
traversal attempts on corpus names, a burst past the rate limit. Then every
log line and every reply (errors, /readyz, /metrics, the dashboard) is
searched for the secret values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from server_harness import ROOT, free_port

CLIENT_KEYS = ("ragcache-client-key-AAAA1111", "ragcache-client-key-BBBB2222")
VENDOR_KEY = "sk-vendor-secret-0000ZZZZ"
OTHER_VENDOR_KEY = "sk-ant-unrelated-1111YYYY"
SECRETS = (*CLIENT_KEYS, VENDOR_KEY, OTHER_VENDOR_KEY)
RATE_PER_MIN = 30
TRAVERSALS = [
    "/v1/corpora/..%2F..%2Fetc%2Fpasswd",
    "/v1/corpora/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/v1/corpora/%2Fetc%2Fpasswd",
    "/v1/corpora/..",
    "/v1/corpora/%00",
    "/v1/corpora/small%00..%2F..%2Fetc%2Fpasswd",
]
MODEL_TRAVERSALS = ["../../../../etc/passwd", "/etc/passwd", "small/../../etc/passwd", "small\x00/etc/passwd", "~"]


class FakeOpenAI(BaseHTTPRequestHandler):
    """Refuses every request with OpenAI's 401 body, quoting the key it was sent."""

    received: list[str] = []  # noqa: RUF012 - one fake per test module

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        key = (self.headers.get("authorization") or "").removeprefix("Bearer ")
        FakeOpenAI.received.append(key)
        body = json.dumps(
            {
                "error": {
                    "message": f"Incorrect API key provided: {key}.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
        ).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Session:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    seen: list[str] = field(default_factory=list)  # every reply's headers and body

    def request(self, method: str, path: str, key: str | None = None, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"} if key else {}
        response = httpx.request(method, self.base_url + path, headers=headers, timeout=60, **kw)
        self.seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    from ragcache.corpus.compile import build_corpus

    tmp = tmp_path_factory.mktemp("secure")
    vendor = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=vendor.serve_forever, daemon=True).start()
    build_corpus(ROOT / "corpora" / "small", tmp / "build")
    config = {
        "corpus": str(ROOT / "corpora" / "small"),
        "build_dir": str(tmp / "build"),
        "backend": {
            "kind": "openai",
            "model": "gpt-4o-mini",
            "api_key_env": "OPENAI_API_KEY",
            "max_retries": 0,
            "base_url": f"http://127.0.0.1:{vendor.server_address[1]}/v1",
            "max_output_tokens": 8,
        },
        "cache": {"warm_on_start": True, "keep_warm": False, "traffic_dir": str(tmp / "traffic")},  # its own warm lock
        "server": {"protect_metrics": True, "rate_limit_per_min": RATE_PER_MIN},
    }
    (tmp / "server.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {
        **os.environ,
        "RAGCACHE_API_KEYS": ",".join(CLIENT_KEYS),
        "OPENAI_API_KEY": VENDOR_KEY,
        "ANTHROPIC_API_KEY": OTHER_VENDOR_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    cmd = [sys.executable, "-m", "ragcache.cli", "serve", "--config", str(tmp / "server.yaml"), "--port", str(port)]
    log_path = tmp / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Session(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_warmed(server)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        vendor.shutdown()


def _wait_warmed(server: Session, timeout_s: float = 300.0) -> None:
    """Until /readyz reports the warm-up's outcome (here: failed on the vendor's 401)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log_path.read_text(errors="replace")[-3000:]
        try:
            if "warming" not in httpx.get(server.base_url + "/readyz", timeout=5).text:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError("the server did not finish warming:\n" + server.log_path.read_text(errors="replace")[-3000:])


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_keys_are_required_and_checked(session: Session) -> None:
    assert error_of(session.request("GET", "/v1/models"), 401)["code"] == "missing_api_key"
    wrong = CLIENT_KEYS[0][:-1] + "X"
    assert error_of(session.request("GET", "/v1/models", wrong), 401)["code"] == "invalid_api_key"
    assert session.request("GET", "/v1/models", CLIENT_KEYS[0]).json()["data"][0]["id"] == "small"


def test_metrics_and_dashboard_need_the_key_probes_do_not(session: Session) -> None:
    for path in ("/metrics", "/dashboard.json", "/"):
        assert error_of(session.request("GET", path), 401)["code"] == "missing_api_key"
        assert session.request("GET", path, CLIENT_KEYS[1]).status_code == 200
    assert session.request("GET", "/healthz").status_code == 200
    readyz = session.request("GET", "/readyz")
    assert readyz.status_code == 503
    assert readyz.json()["corpora"]["small"].startswith("failed")  # the vendor refused the key while warming
    assert "***" in readyz.text  # and the key it quoted was scrubbed


def test_a_vendor_auth_failure_reaches_the_client_without_the_key(session: Session) -> None:
    chat = {"model": "small", "messages": [{"role": "user", "content": "Is SQLite serverless?"}]}
    for body in (chat, {**chat, "stream": True}):
        error = error_of(session.request("POST", "/v1/chat/completions", CLIENT_KEYS[0], json=body), 401)
        assert "refused" in error["message"] and "***" in error["message"]
    ask = session.request("POST", "/v1/ask", CLIENT_KEYS[0], json={"question": "Is SQLite serverless?"})
    assert "***" in error_of(ask, 401)["message"]
    assert VENDOR_KEY in FakeOpenAI.received  # the key really went out, so the scrubbing was needed
    malformed = session.request("POST", "/v1/chat/completions", CLIENT_KEYS[0], content=b"{not json")
    assert error_of(malformed, 400)["code"] == "invalid_json"


@pytest.mark.parametrize("path", TRAVERSALS)
def test_corpus_names_in_urls_never_reach_the_file_system(session: Session, path: str) -> None:
    response = session.request("GET", path, CLIENT_KEYS[0])
    assert response.status_code in (400, 404)
    error_of(response, response.status_code)
    assert "root:" not in response.text


@pytest.mark.parametrize("model", MODEL_TRAVERSALS)
def test_corpus_names_in_the_model_field_never_reach_the_file_system(session: Session, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    refused = (400, "invalid_text") if "\x00" in model else (404, "model_not_found")  # NUL: refused as text
    error = error_of(session.request("POST", "/v1/chat/completions", CLIENT_KEYS[0], json=body), refused[0])
    assert error["code"] == refused[1] and "root:" not in error["message"]


def test_a_burst_past_the_rate_limit_gets_429_with_retry_after(session: Session) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        burst = range(2 * RATE_PER_MIN)
        replies = list(pool.map(lambda _: session.request("GET", "/v1/models", CLIENT_KEYS[1]), burst))
    refilled = (time.monotonic() - started) * RATE_PER_MIN / 60
    allowed = sum(r.status_code == 200 for r in replies)
    limited = [r for r in replies if r.status_code == 429]
    assert allowed + len(limited) == len(replies)
    assert RATE_PER_MIN <= allowed <= RATE_PER_MIN + refilled + 1  # the burst, plus what refilled meanwhile
    error = error_of(limited[0], 429)
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert 1 <= int(limited[0].headers["retry-after"]) <= 2
    assert session.request("GET", "/v1/models", CLIENT_KEYS[0]).status_code == 200  # another key's own bucket


def test_no_secret_in_any_log_line_reply_or_metric(session: Session) -> None:
    metrics = session.request("GET", "/metrics", CLIENT_KEYS[0]).text
    assert "ragcache_errors_total" in metrics and "ragcache_queue_depth" in metrics
    session.process.terminate()
    session.process.wait(timeout=30)
    log = session.log_path.read_text(errors="replace")
    assert "Incorrect API key provided: ***" in log  # the warm-up's failure was logged, scrubbed
    for secret in SECRETS:
        assert secret not in log, f"{secret!r} in the server log"
        assert secret not in metrics
        leaked = [reply[:300] for reply in session.seen if secret in reply]
        assert not leaked, f"{secret!r} in replies: {leaked}"
