"""The dashboard in a real headless Chromium (Debian's, driven by Playwright).

After a few real answers the page must show the hit rate the server measured,
load nothing from outside the server, and leave a screenshot behind (under the
test's tmp dir, and in ``$RAGCACHE_ARTIFACTS`` when that is set).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import openai
import pytest
from server_harness import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium_page(tmp_path_factory: pytest.TempPathFactory):
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install chromium (scripts/setup.sh --test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def test_dashboard_shows_the_hit_rate(ragcache_server: ServerProcess, chromium_page, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=ragcache_server.base_url + "/v1", api_key=ragcache_server.api_key, max_retries=0)
    for question in ["Is SQLite serverless?", "What is type affinity?", "Is SQLite serverless?"]:
        client.chat.completions.create(model="small", max_tokens=8, messages=[{"role": "user", "content": question}])
    expected = httpx.get(ragcache_server.base_url + "/dashboard.json").json()["totals"]
    assert expected["requests"] >= 3 and expected["hits"] >= 1

    outside: list[str] = []
    chromium_page.on("request", lambda r: None if r.url.startswith(ragcache_server.base_url) else outside.append(r.url))
    chromium_page.goto(ragcache_server.base_url + "/", wait_until="networkidle")

    hit_rate = chromium_page.locator("[data-metric='Hit rate'] .value").inner_text()
    assert re.fullmatch(r"\d{1,3}\.\d%", hit_rate), hit_rate
    assert abs(float(hit_rate[:-1]) - 100 * expected["hit_rate"]) < 0.2
    assert float(hit_rate[:-1]) > 0
    note = chromium_page.locator("[data-metric='Hit rate'] .note").inner_text()
    assert re.search(r"\d+ of \d+ answers reused the cache", note), note
    assert chromium_page.locator("[data-metric='Cached-token ratio'] .value").inner_text().endswith("%")
    assert chromium_page.locator("#series svg path").count() == 2  # hit rate and cached ratio over time
    assert chromium_page.locator("#ttft svg rect").count() >= 5  # the TTFT histogram
    assert "category:faq" in chromium_page.locator("#corpora").inner_text()
    assert "prefixes warm" in chromium_page.locator("#readiness").inner_text()
    assert outside == [], f"the dashboard must not touch the network: {outside}"

    shot = tmp_path / "dashboard.png"
    chromium_page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    artifacts = os.environ.get("RAGCACHE_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "dashboard.png")
