"""A real gunicorn instance with two workers: the switch and the metrics reach both."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
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


@contextlib.contextmanager
def serve(
    tmp_path: Path, *options: str, config: dict[str, Any] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Two workers forked from a master that imported the app first (``--preload``):
    each worker starts its own monitor with its first request.

    :param config: more of the app's configuration (see ``tests.health.apps``).
    """
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
        **(config or {}),
    }
    env = {
        **os.environ,
        "HEALTH_TEST_CONFIG": json.dumps(config),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    command = [str(executable), "--workers", "2", "--bind", f"127.0.0.1:{port}"]
    command += [
        *gunicorn_options(),
        *options,
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
        yield url, process
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


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[str]:
    with serve(tmp_path) as (url, _process):
        yield url


def scrape(url: str) -> tuple[str, dict[str, Any]]:
    status, body = call(f"{url}/health/metrics", headers=AUTH)
    assert status == 200
    text = body.decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def served(families: dict[str, Any], endpoint: str = "sleep") -> list[float]:
    return [
        s.value
        for s in families["resilience_http_requests"].samples
        if s.name == "resilience_http_requests_total" and s.labels["endpoint"] == endpoint
    ]


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

    # Each worker hands its counts to the shared files within one monitor interval.
    assert wait_until(lambda: served(scrape(gunicorn)[1]) == [40], INTERVAL + 5)
    families = scrape(gunicorn)[1]
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


def test_recycled_workers_keep_their_counts_and_leave_their_gauges(tmp_path: Path) -> None:
    """Workers replaced after 20 requests each: every request is still counted once,
    the process gauges are those of the live workers only, and the exposition is one
    that Prometheus' own linter accepts."""
    promtool = shutil.which("promtool")
    if promtool is None:
        skip_or_fail("promtool is missing: apt install prometheus (make test installs it)")
    hooks = str(ROOT / "tests" / "lifecycle" / "gunicorn_conf.py")
    # One thread: the hooks' file asks for gthread's four, which would make it gthread.
    options = (
        "--config",
        hooks,
        "--worker-class",
        "sync",
        "--threads",
        "1",
        "--max-requests",
        "20",
    )
    with serve(tmp_path, *options) as (url, process):
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: call(f"{url}/sleep/0.01")[0], range(120)))
        assert statuses == [200] * 120
        assert wait_until(lambda: served(scrape(url)[1]) == [120], INTERVAL + 5)

        master = psutil.Process(process.pid)
        # Workers that just served their 20th request may still be on their way out.
        assert wait_until(lambda: len(master.children()) == 2, 10)
        live = {str(child.pid) for child in master.children()}
        text, families = scrape(url)
        # The scrape is a request too: it may have recycled a worker meanwhile.
        live |= {str(child.pid) for child in master.children()}
        for name in ("resilience_process_resident_memory_bytes", "resilience_process_threads"):
            pids = {sample.labels["pid"] for sample in families[name].samples}
            assert pids <= live, name
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
