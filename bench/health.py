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

from bench.core import PRODUCTION_CONFIG
from bench.table import Row, median_seconds, render, scaled
from flask_resilience import Resilience


def _wsgi_call(app: Flask, path: str) -> Callable[[], object]:
    """One request through the app's WSGI callable, without a test client around it."""
    environ = EnvironBuilder(path=path).get_environ()

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        return None

    def call() -> object:
        body = app.wsgi_app(dict(environ), start_response)
        return b"".join(body)  # type: ignore[arg-type]

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
    app.extensions["resilience"].health.monitor.stop()


def _paired(
    first: Callable[[], object], second: Callable[[], object], scale: float
) -> tuple[float, float]:
    """Seconds a call of each takes, from short alternating rounds: the median of the
    rounds' ratios, so that a busy moment of the machine weighs on both alike.

    :return: the first's median, and the second's as that times the median ratio.
    """
    firsts, ratios = [], []
    repeat = scaled(200, scale)
    for _ in range(scaled(61, scale, minimum=3)):
        one = median_seconds(first, repeat=repeat, rounds=1)
        other = median_seconds(second, repeat=repeat, rounds=1)
        firsts.append(one)
        ratios.append(other / one)
    median_first = statistics.median(firsts)
    return median_first, median_first * statistics.median(ratios)


def live_ratio(scale: float) -> Row:
    bare, resilient = _bare(), _resilient()
    hello, live = _wsgi_call(bare, "/"), _wsgi_call(resilient, "/health/live")
    live()  # the first request starts the monitor
    bare_seconds, live_seconds = _paired(hello, live, scale)
    _stop_monitor(resilient)
    ratio = bare_seconds / live_seconds
    return Row("/health/live req/s vs bare Flask hello", ratio, "x", ">= 0.9", ratio >= 0.9)


def hook_overhead(scale: float) -> Row:
    """What health adds to every request of the app: the same app with it off and on."""
    without, with_health = _resilient(RESILIENCE_HEALTH_ENABLED=False), _resilient()
    plain, timed = _wsgi_call(without, "/"), _wsgi_call(with_health, "/")
    timed()
    plain_seconds, timed_seconds = _paired(plain, timed, scale)
    _stop_monitor(with_health)
    micro = (timed_seconds - plain_seconds) * 1e6
    return Row("health's request timing, cost per request", micro, "us", "< 10 us", micro < 10)


def ready_with_hanging_check(scale: float) -> Row:
    """Worst readiness latency at the default timeout while one check hangs forever."""
    release = threading.Event()
    worst = 0.0
    apps = []
    for _ in range(scaled(3, scale)):
        app = _resilient()
        app.extensions["resilience"].extension.health_check("hung", critical=True)(
            lambda: release.wait(3600)
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
    monitor = app.extensions["resilience"].health.monitor
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
