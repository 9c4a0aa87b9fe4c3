"""Per-request cost of flask_resilience on a hello-world view, against bare Flask and
against the extensions an app would otherwise stack for the same ends.

Every contender serves the same view, and all of them are measured in one
comparison, their rounds interleaved (see :func:`bench.table.compare`).
flask_resilience goes from its core (problem errors, request ids, log context) to
everything on, one part at a time: its defaults with rate limiting off (which add
health's request timing and metrics), then session checks, then rate limiting
with memory storage. The peers are Flask-Limiter, prometheus-flask-exporter, and
both stacked. Every rate limiter counts the same limit, high enough never to be
reached, and sends X-RateLimit headers, as flask_resilience does.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import prometheus_client
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from prometheus_flask_exporter import PrometheusMetrics

from bench.core import hello_app, wsgi_caller
from bench.table import Row, compare
from flask_resilience import Resilience
from flask_resilience.health import HealthState

ROUNDS = 15
REPEAT = 2000
LIMIT = "1000000000 per hour"
LIMITS_OFF = {"RATELIMIT_ENABLED": False}
SESSION_CHECKS = {
    "RESILIENCE_SESSION_SCHEMA": {"uid": int},
    "RESILIENCE_SESSION_IDLE_TIMEOUT": 3600,
    "RESILIENCE_SESSION_ABSOLUTE_TIMEOUT": 12 * 3600,
}

BARE = "bare Flask"
CORE = "flask_resilience core: health, limits off"
DEFAULTS = "flask_resilience defaults, limits off"
SESSIONS = "flask_resilience + session checks, limits off"
EVERYTHING = "flask_resilience everything on, limits in memory"
LIMITER = "Flask-Limiter alone"
EXPORTER = "prometheus-flask-exporter alone"
STACKED = "Flask-Limiter + prometheus-flask-exporter"


def resilient(**config: Any) -> Flask:
    app = hello_app(**config)
    Resilience(app)
    return app


def with_limiter(app: Flask) -> Flask:
    app.config.update(
        RATELIMIT_DEFAULT=LIMIT, RATELIMIT_STORAGE_URI="memory://", RATELIMIT_HEADERS_ENABLED=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Limiter(get_remote_address, app=app)
    return app


def with_exporter(app: Flask) -> Flask:
    # A registry of its own: the default one refuses a second app's metrics.
    PrometheusMetrics(app, registry=prometheus_client.CollectorRegistry())
    return app


def contenders() -> dict[str, Flask]:
    return {
        BARE: hello_app(),
        CORE: resilient(**LIMITS_OFF, RESILIENCE_HEALTH_ENABLED=False),
        DEFAULTS: resilient(**LIMITS_OFF),
        SESSIONS: resilient(**LIMITS_OFF, **SESSION_CHECKS),
        EVERYTHING: resilient(RATELIMIT_DEFAULT=LIMIT, **SESSION_CHECKS),
        LIMITER: with_limiter(hello_app()),
        EXPORTER: with_exporter(hello_app()),
        STACKED: with_exporter(with_limiter(hello_app())),
    }


def stop_monitor(app: Flask) -> None:
    """Stop the background monitor the app's first request started.

    The monitor drains the queue of finished requests every interval, on its own
    thread, whose CPU time the comparison leaves out; without it the requests
    count themselves, as the exporter's do.
    """
    state = app.extensions.get("resilience")
    health = state.find(HealthState) if state is not None else None
    if health is not None:
        health.monitor.stop()


def rows(scale: float = 1.0) -> list[Row]:
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    apps = contenders()
    calls = {name: wsgi_caller(app) for name, app in apps.items()}
    for name, call in calls.items():
        call()  # warm up
        stop_monitor(apps[name])
    seconds = compare(calls, repeat=REPEAT, rounds=ROUNDS, scale=scale)

    def ratio(name: str, other: str) -> float:
        return seconds[name] / seconds[other]

    without_limits, against_stacked = ratio(DEFAULTS, BARE), ratio(EVERYTHING, STACKED)
    return [
        *(
            Row(f"hello world, {name}", each * 1e6, "us", "-", True)
            for name, each in seconds.items()
        ),
        Row("core / bare: errors, request ids, log context", ratio(CORE, BARE), "x", "-", True),
        Row(
            "defaults without rate limiting / bare",
            without_limits,
            "x",
            "<= 1.10x",
            without_limits <= 1.10,
        ),
        Row("everything on / bare", ratio(EVERYTHING, BARE), "x", "-", True),
        Row("Flask-Limiter alone / bare", ratio(LIMITER, BARE), "x", "-", True),
        Row("prometheus-flask-exporter alone / bare", ratio(EXPORTER, BARE), "x", "-", True),
        Row("Flask-Limiter + exporter / bare", ratio(STACKED, BARE), "x", "-", True),
        Row("everything on / Flask-Limiter alone", ratio(EVERYTHING, LIMITER), "x", "-", True),
        Row(
            "everything on / Flask-Limiter + exporter",
            against_stacked,
            "x",
            "<= 0.9x",
            against_stacked <= 0.9,
        ),
    ]
