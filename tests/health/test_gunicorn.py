"""A real gunicorn instance with two workers: the switch and the metrics reach both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.health.apps import TOKEN
from tests.support.paths import ROOT
from tests.support.servers import free_port, gunicorn_options, skip_or_fail, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}
INTERVAL = 0.2


def call(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[str]:
    """Two workers forked from a master that imported the app first (``--preload``):
    each worker starts its own monitor with its first request."""
    executable = Path(sys.executable).with_name("gunicorn")
    if not executable.exists():
        skip_or_fail("gunicorn is missing: pip install -e '.[example]'")
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    config = {
        "instance_path": str(tmp_path / "instance"),
        "RESILIENCE_MONITOR_INTERVAL": INTERVAL,
        "RESILIENCE_HEALTH_CACHE_TTL": 0,
        "slow_check": 0.15,
    }
    env = {
        **os.environ,
        "HEALTH_TEST_CONFIG": json.dumps(config),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    command = [str(executable), "--workers", "2", "--bind", f"127.0.0.1:{port}"]
    command += [
        *gunicorn_options(),
        "--pythonpath",
        str(ROOT),
        "--graceful-timeout",
        "2",
        "--preload",
        "tests.health.apps:create_app()",
    ]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until(lambda: call(f"{url}/health/live")[0] == 200, 30, 0.1):
            process.kill()
            pytest.fail(f"gunicorn did not start: {process.communicate(timeout=10)[1][-2000:]!r}")
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


def monitors_by_worker(url: str) -> dict[int, str]:
    """The monitor state of each worker, from concurrent detailed probes."""
    states: dict[int, str] = {}

    def probe(_: int) -> dict[str, Any] | None:
        status, body = call(f"{url}/health/detailed?history=0", headers=AUTH)
        return json.loads(body) if status in (200, 503) else None

    with ThreadPoolExecutor(4) as pool:
        for _ in range(20):
            for data in pool.map(probe, range(4)):
                if data is not None:
                    states[data["process"]["pid"]] = data["monitor"]["state"]
            if len(states) == 2:
                break
    return states


def test_the_switch_reaches_every_worker(gunicorn: str) -> None:
    states = monitors_by_worker(gunicorn)
    assert len(states) == 2
    assert set(states.values()) == {"running"}

    status, body = call(f"{gunicorn}/health/monitoring/stop", "POST", AUTH)
    assert (status, json.loads(body)["monitoring"]) == (200, "stopped")
    assert wait_until(lambda: set(monitors_by_worker(gunicorn).values()) == {"stopped"}, 5)
    states = monitors_by_worker(gunicorn)
    assert len(states) == 2
    assert set(states.values()) == {"stopped"}

    status, body = call(f"{gunicorn}/health/monitoring/start", "POST", AUTH)
    assert (status, json.loads(body)["monitoring"]) == (200, "running")
    assert wait_until(lambda: set(monitors_by_worker(gunicorn).values()) == {"running"}, 5)
    assert len(monitors_by_worker(gunicorn)) == 2


def test_metrics_sum_the_requests_of_both_workers(gunicorn: str) -> None:
    def request(_: int) -> int:
        status, body = call(f"{gunicorn}/sleep/0.05")
        assert status == 200
        return int(body)

    with ThreadPoolExecutor(4) as pool:
        pids = list(pool.map(request, range(40)))
    assert len(set(pids)) == 2

    def scrape() -> dict[str, Any]:
        status, body = call(f"{gunicorn}/health/metrics", headers=AUTH)
        assert status == 200
        return {f.name: f for f in text_string_to_metric_families(body.decode())}

    def served(families: dict[str, Any]) -> list[float]:
        return [
            s.value
            for s in families["resilience_http_requests"].samples
            if s.name == "resilience_http_requests_total" and s.labels["endpoint"] == "sleep"
        ]

    # Each worker hands its counts to the shared files within one monitor interval.
    assert wait_until(lambda: served(scrape()) == [40], INTERVAL + 5)
    families = scrape()
    latency = [
        s.value
        for s in families["resilience_http_request_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels["endpoint"] == "sleep"
    ]
    assert latency == [40]
    rss_pids = {
        s.labels["pid"] for s in families["resilience_process_resident_memory_bytes"].samples
    }
    assert {str(pid) for pid in pids} <= rss_pids
