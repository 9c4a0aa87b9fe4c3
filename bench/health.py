"""Health benchmarks: liveness against bare Flask, readiness with a hanging check,
the cost of the request hook, and the monitor's CPU use.

Run alone with ``python -m bench.health``.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

from bench.core import PRODUCTION_CONFIG, unused_write
from bench.table import Row, compare, render, scaled
from flask_resilience import Resilience
from flask_resilience.health import health_state
from flask_resilience.state import HealthCheck

ROUNDS = 61
REPEAT = 200


def _wsgi_call(app: Flask, path: str) -> Callable[[], object]:
    """One request through the app's WSGI callable, without a test client around it."""
    environ = EnvironBuilder(path=path).get_environ()

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], object]:
        return unused_write

    def call() -> object:
        body = app.wsgi_app(dict(environ), start_response)
        return b"".join(body)

    return call


def _bare() -> Flask:
    app = Flask("bare")
    app.get("/")(lambda: "hello")
    return app


def _resilient(**config: Any) -> Flask:
    app = Flask("resilient", instance_path=tempfile.mkdtemp(prefix="bench-health-"))
    app.config.update(PRODUCTION_CONFIG, RESILIENCE_HEALTH_TOKEN="bench-token", **config)
    app.get("/")(lambda: "hello")
    Resilience(app)
    return app


def _stop_monitor(app: Flask) -> None:
    health_state(app).monitor.stop()


def live_ratio(scale: float) -> Row:
    bare, resilient = _bare(), _resilient()
    calls = {"hello": _wsgi_call(bare, "/"), "live": _wsgi_call(resilient, "/health/live")}
    calls["live"]()  # the first request starts the monitor
    seconds = compare(calls, repeat=REPEAT, rounds=ROUNDS, scale=scale)
    _stop_monitor(resilient)
    ratio = seconds["hello"] / seconds["live"]
    return Row("/health/live req/s vs bare Flask hello", ratio, "x", ">= 0.9", ratio >= 0.9)


def hook_overhead(scale: float) -> Row:
    """What health adds to every request of the app: the same app with it off and on."""
    without, with_health = _resilient(RESILIENCE_HEALTH_ENABLED=False), _resilient()
    calls = {"plain": _wsgi_call(without, "/"), "timed": _wsgi_call(with_health, "/")}
    calls["timed"]()
    # Without the monitor, which counts finished requests on its own thread every
    # interval, the requests count themselves: all of it is measured.
    _stop_monitor(with_health)
    seconds = compare(calls, repeat=REPEAT, rounds=ROUNDS, scale=scale)
    micro = (seconds["timed"] - seconds["plain"]) * 1e6
    return Row("health's request timing, cost per request", micro, "us", "< 10 us", micro < 10)


def ready_with_hanging_check(scale: float) -> Row:
    """Worst readiness latency at the default timeout while one check hangs forever."""
    release = threading.Event()
    worst = 0.0
    apps = []
    for _ in range(scaled(3, scale)):
        app = _resilient()
        app.extensions["resilience"].health_checks["hung"] = HealthCheck(
            "hung", lambda: release.wait(3600), critical=True
        )
        ready = _wsgi_call(app, "/health/ready")
        for _ in range(scaled(5, scale)):
            started = time.perf_counter()
            ready()
            worst = max(worst, time.perf_counter() - started)
        apps.append(app)
    release.set()
    for app in apps:
        _stop_monitor(app)
    return Row("/health/ready, one check hanging (worst)", worst, "s", "<= 1.1 s", worst <= 1.1)


def monitor_cpu(scale: float) -> Row:
    """CPU one sample costs, as a share of one core at a 1 s interval.

    Measured with ``time.thread_time`` around the monitor's own ``tick`` (the work
    its thread does each interval): per-thread times from the kernel count in 10 ms
    ticks, coarser than a sample.
    """
    app = _resilient(RESILIENCE_MONITOR_INTERVAL=1.0)
    _wsgi_call(app, "/")()
    monitor = health_state(app).monitor
    monitor.stop()
    monitor.active = True
    costs = []
    for _ in range(scaled(20, scale, minimum=3)):
        started = time.thread_time()
        monitor.tick()
        costs.append(time.thread_time() - started)
    percent = 100.0 * statistics.median(costs) / 1.0
    return Row("monitor CPU at a 1 s interval", percent, "% core", "< 1 %", percent < 1.0)


def rows(scale: float = 1.0) -> list[Row]:
    return [
        live_ratio(scale),
        hook_overhead(scale),
        ready_with_hanging_check(scale),
        monitor_cpu(scale),
    ]


if __name__ == "__main__":
    print(render(rows()))
