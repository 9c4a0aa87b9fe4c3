"""Load shedding: answer 503 at once to a request that waited too long to be served.

Under overload, requests queue in front of the workers (in the server's listen
backlog, or in the proxy). A worker that serves one its client gave up on, or
will soon, spends the time every request behind it is waiting for, and the
queue only grows. The proxy in front of the app can stamp each request with the
time it arrived (nginx: ``proxy_set_header X-Request-Start "t=${msec}";``;
Heroku and several load balancers do it themselves). With
``RESILIENCE_MAX_QUEUE_TIME`` set, a request that waited longer is refused with
503 problem+json and ``Retry-After`` before any view, session or database work,
so that the queue drains and the requests behind it are served in time.

A request without the header is served as usual. The health endpoints are never
shed: a load balancer must hear from readiness what the checks say.
"""

from __future__ import annotations

import math
import time
from typing import NoReturn

from flask import Flask, request
from werkzeug.exceptions import ServiceUnavailable

from . import signals
from .errors import ProblemError
from .pipeline import Refusal
from .state import ResilienceState

HEADER = "X-Request-Start"
RETRY_AFTER = 1

# Proxies write seconds, milliseconds or microseconds since the epoch; the
# magnitude tells which (a time in seconds stays below 1e10 until the year 2286).
_UNITS = ((1e14, 1e-6), (1e11, 1e-3), (0.0, 1.0))


class Overloaded(ProblemError, ServiceUnavailable):
    """The request waited longer than ``RESILIENCE_MAX_QUEUE_TIME``: 503, try again soon."""

    kind = "overloaded"


def arrival_time(header: str) -> float | None:
    """The epoch seconds in an ``X-Request-Start`` value (``t=1700000000.123`` or bare).

    None for a value that is not a number: a malformed stamp is ignored, not an error.
    """
    value = header.strip().removeprefix("t=")
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number) or number <= 0:  # nothing a clock writes
        return None
    for threshold, scale in _UNITS:
        if number >= threshold:
            return number * scale
    return None  # pragma: no cover  (the last threshold is 0)


def init_app(app: Flask, state: ResilienceState) -> None:
    """Refuse requests that queued longer than ``max_queue_time``; nothing when None.

    The first look of the request decides, before the session checks or anything
    else costs time; the gate answers, once the hooks of other extensions (a
    tracing span) have seen the request.
    """
    max_queue_time = state.settings.max_queue_time
    if max_queue_time is None:
        return
    exempt = state.settings.health_url_prefix.rstrip("/") + "/"

    def shed_stale_request() -> Refusal | None:
        stamp = request.headers.get(HEADER)
        if stamp is None or request.path.startswith(exempt):
            return None
        arrived = arrival_time(stamp)
        if arrived is None:
            return None
        waited = time.time() - arrived
        if waited <= max_queue_time:
            return None

        def refuse() -> NoReturn:
            signals.send(signals.request_shed, waited=waited)
            raise Overloaded(
                f"The server is overloaded: this request waited {waited:.1f} s to be served."
                f" Try again in {RETRY_AFTER} s.",
                headers={"Retry-After": str(RETRY_AFTER)},
                queue_seconds=round(waited, 3),
            )

        return refuse

    state.path.add_look(app, shed_stale_request, first=True)
