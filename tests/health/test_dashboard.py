"""The dashboard in a real headless Chromium: it loads, polls and draws its charts.

Set ``HEALTH_DASHBOARD_SCREENSHOT=docs/dashboard.png`` to save the picture the
documentation shows (the gunicorn test's, with two workers and a forced breaker, is
taken last).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.health.apps import BREAKER, TOKEN, create_app
from tests.health.test_gunicorn import AUTH, call, serve
from tests.support.servers import skip_or_fail, wait_until

# Debian's names first (`make test` installs them there); Fedora calls it chromium-browser.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_INTERVAL=0.1)

    @app.get("/work")
    def work() -> str:
        time.sleep(0.002)
        return "done"

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        skip_or_fail("Chromium is missing: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="health-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_dashboard_draws_live_charts(served: tuple[Flask, str], browser: Any) -> None:
    app, url = served
    client = app.test_client()
    for number in range(30):
        client.get("/work" if number % 10 else "/fail")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}}
    )
    browser.get(f"{url}/health/dashboard")
    assert browser.title == "Health dashboard"

    def drawn(canvas: str) -> int:
        # Pixels of the chart's line colour: the series was drawn, not only the grid.
        count: int = browser.execute_script(
            """
            var c = document.getElementById(arguments[0]);
            var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, n = 0;
            for (var i = 0; i < d.length; i += 4) {
              if (d[i] < 90 && d[i + 1] > 80 && d[i + 1] < 130 && d[i + 2] > 190) n++;
            }
            return n;
            """,
            canvas,
        )
        return count

    charts = ("cpu", "memory", "latency", "errors")
    assert wait_until(lambda: all(drawn(c) > 50 for c in charts), 20, 0.25)
    status = browser.find_element("id", "status").text
    assert status in ("PASS", "WARN", "FAIL")
    assert browser.find_element("id", "level").text in ("HEALTHY", "WARNING", "CRITICAL")
    assert browser.find_element("id", "monitoring").text == "RUNNING"
    rows = browser.find_elements("css selector", "#checks tr")
    assert len(rows) >= 2
    assert browser.find_element("id", "error").text == ""
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    screenshot = os.environ.get("HEALTH_DASHBOARD_SCREENSHOT")
    if screenshot:
        time.sleep(3)  # a few more samples make a better picture
        browser.save_screenshot(screenshot)


def test_dashboard_polls_with_the_token_of_its_fragment(
    served: tuple[Flask, str], browser: Any
) -> None:
    """Only the page load carries the header; the polls use the #token=... fragment."""
    _, url = served
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}}
    )
    browser.get(f"{url}/health/dashboard#token={TOKEN}")
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    assert browser.current_url.endswith("/health/dashboard")  # the token left the address
    assert wait_until(lambda: browser.find_element("id", "updated").text.startswith("updated"), 10)
    browser.execute_script("document.getElementById('updated').textContent = ''")
    assert wait_until(lambda: browser.find_element("id", "updated").text.startswith("updated"), 10)
    assert browser.find_element("id", "error").text == ""


def test_the_dashboard_shows_every_gunicorn_worker_and_a_forced_breaker(
    tmp_path: Path, browser: Any
) -> None:
    """Real gunicorn with two workers: both workers' rows and lines are on the page, and
    the breaker an operator forced open in the worker that took the POST shows so."""
    with serve(tmp_path, config={"dashboard_parts": True}) as (url, _process):

        def traffic(number: int) -> int:
            path = ("/sleep/0.05", "/charge", "/report", "/fail")[number % 4]
            return call(f"{url}{path}")[0]

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(traffic, range(40)))
        status, body = call(f"{url}/health/breakers/{BREAKER}/open", "POST", AUTH)
        assert status == 200, body
        assert json.loads(body)["state"] == "forced-open"
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": AUTH})
        browser.get(f"{url}/health/dashboard")

        # Read in one script: the page rebuilds its tables at every poll.
        def rows() -> dict[str, int]:
            found: dict[str, int] = browser.execute_script(
                """
                var found = {};
                document.querySelectorAll("#workers tr.worker").forEach(function (row) {
                  found[row.cells[0].textContent] = parseInt(row.cells[4].textContent, 10);
                });
                return found;
                """
            )
            return found

        def states() -> list[str]:
            found: list[str] = browser.execute_script(
                "return Array.from(document.querySelectorAll('.breaker-state'))"
                ".map(function (badge) { return badge.textContent; });"
            )
            return found

        with ThreadPoolExecutor(2) as pool:
            assert wait_until(
                lambda: (
                    bool(list(pool.map(traffic, range(4))))
                    and len(rows()) == 2
                    and all(served > 0 for served in rows().values())
                ),
                30,
                0.25,
            ), rows()
        assert wait_until(lambda: any(s.endswith("forced-open") for s in states()), 10), states()
        assert sorted(s.split(": ")[1] for s in states()) == ["closed", "forced-open"]
        assert browser.find_element("id", "workers-count").text == "2"
        assert (
            browser.execute_script("return document.querySelectorAll('#legend span').length") == 2
        )
        assert browser.find_element("id", "error").text == ""
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
        screenshot = os.environ.get("HEALTH_DASHBOARD_SCREENSHOT")
        if screenshot:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(traffic, range(200)))
            browser.set_window_size(1280, 1240)  # every panel, the breakers included
            time.sleep(3)
            browser.save_screenshot(screenshot)
