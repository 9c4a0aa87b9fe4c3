"""What each part of flask_resilience costs a request, on its own row.

A hello-world app with every part the extension can turn off turned off is the
baseline; each row turns one part on over it and reports the difference in
microseconds per request. A regression then points at its part. The rows are
measured in one comparison, their rounds interleaved (see
:func:`bench.table.compare`); a part whose work only shows on some requests is
measured on those (load shedding on stamped requests, the problem handlers on a
404). A part that saves the baseline work shows a negative cost: the session guard
opens a request's empty session without Flask building its signing serializer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from bench.core import hello_app, wsgi_caller
from bench.peers import stop_monitor
from bench.table import Row, compare
from flask_resilience import Resilience

ROUNDS = 15
REPEAT = 2000

# Every part off that can be.
MINIMAL: dict[str, Any] = {
    "RATELIMIT_ENABLED": False,
    "RESILIENCE_HEALTH_ENABLED": False,
    "RESILIENCE_REQUEST_ID_HEADER": None,
    "RESILIENCE_LOG_CONTEXT": False,
    "RESILIENCE_ERROR_FORMAT": "off",
    "RESILIENCE_SESSION_GUARD": False,
    "RESILIENCE_REQUEST_TIMEOUT": None,
}

PARTS: dict[str, dict[str, Any]] = {
    "request ids and log context": {
        "RESILIENCE_REQUEST_ID_HEADER": "X-Request-ID",
        "RESILIENCE_LOG_CONTEXT": True,
    },
    "health's request timing": {"RESILIENCE_HEALTH_ENABLED": True},
    "deadlines (no database)": {"RESILIENCE_REQUEST_TIMEOUT": 30},
    "session guard": {"RESILIENCE_SESSION_GUARD": True},
    "session checks (schema, timeouts)": {
        "RESILIENCE_SESSION_SCHEMA": {"uid": int},
        "RESILIENCE_SESSION_IDLE_TIMEOUT": 3600,
        "RESILIENCE_SESSION_ABSOLUTE_TIMEOUT": 12 * 3600,
    },
    "rate limits (memory)": {
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_DEFAULT": "1000000000 per hour",
        "RATELIMIT_STORAGE_URI": "memory://",
    },
    # The stamp is made once, as the benchmark starts: a limit no run of it reaches.
    "load shedding (stamped requests)": {"RESILIENCE_MAX_QUEUE_TIME": 24 * 3600},
    "problem handlers (a 404)": {"RESILIENCE_ERROR_FORMAT": "auto"},
}
_ON_A_404 = "problem handlers (a 404)"


def _app(**config: Any) -> Flask:
    app = hello_app(**{**MINIMAL, **config})
    Resilience(app)
    return app


def _caller(app: Flask, part: str | None) -> Callable[[], object]:
    if part == _ON_A_404:
        return wsgi_caller(app, "/nowhere", expect="404")
    if part == "load shedding (stamped requests)":
        return wsgi_caller(app, "/", HTTP_X_REQUEST_START=f"t={time.time():.3f}")
    return wsgi_caller(app, "/")


def rows(scale: float = 1.0) -> list[Row]:
    baseline = _app()
    calls: dict[str, Callable[[], object]] = {
        "minimal": wsgi_caller(baseline, "/"),
        "minimal, a 404": wsgi_caller(baseline, "/nowhere", expect="404"),
    }
    for part, config in PARTS.items():
        app = _app(**config)
        calls[part] = _caller(app, part)
        calls[part]()  # the first request starts what starts with it (the monitor)
        stop_monitor(app)
    calls["minimal"](), calls["minimal, a 404"]()
    seconds = compare(calls, repeat=REPEAT, rounds=ROUNDS, scale=scale)
    result = [Row("hello world, every part off", seconds["minimal"] * 1e6, "us", "-", True)]
    for part in PARTS:
        base = seconds["minimal, a 404" if part == _ON_A_404 else "minimal"]
        cost = (seconds[part] - base) * 1e6
        result.append(Row(f"part: {part}, cost per request", cost, "us", "-", True))
    return result
