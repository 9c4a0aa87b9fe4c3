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
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, NoReturn

from flask import Flask, request
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.wrappers import Request

from . import log, pipeline, problems, signals
from .errors import ProblemError
from .pipeline import Refusal
from .state import ResilienceState

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

HEADER = "X-Request-Start"
RETRY_AFTER = 1

_STAMP = "HTTP_" + HEADER.upper().replace("-", "_")
_WAITED = "flask_resilience.queue_seconds"
"""Where the layer leaves the wait of a request it lets Flask refuse."""

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

    The decision is taken in a WSGI layer, the moment the request reaches the app.
    When nothing but the extension would see the refusal (no other extension's
    hook, no hook of the app's that runs after a refusal, no handler of the app's
    for it, nobody listening to Flask's request signals), the layer answers there
    and then: under overload every refusal costs a worker the time it is not
    serving, and a request context is most of that cost. Otherwise the first look
    of the request refuses it, before the session checks or anything else costs
    time, and the gate answers, once the hooks of other extensions (a tracing
    span) have seen the request; the app's handlers render the answer.
    """
    max_queue_time = state.settings.max_queue_time
    if max_queue_time is None:
        return
    exempt = state.settings.health_url_prefix.rstrip("/") + "/"
    unseen = partial(_refusal_unseen, app, state)

    def shed_layer(wsgi_app: WSGIApplication) -> WSGIApplication:
        def shedding(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            waited = _queued_too_long(environ, exempt, max_queue_time)
            if waited is None:
                return wsgi_app(environ, start_response)
            if unseen():
                error, asked = _overloaded(app, waited), Request(environ)
                log.log_refusal(app, asked, error)
                return problems.refusal_before_flask(app, asked, error)(environ, start_response)
            environ[_WAITED] = waited
            return wsgi_app(environ, start_response)

        return shedding

    def shed_stale_request() -> Refusal | None:
        waited: float | None = request.environ.get(_WAITED)
        if waited is None:
            return None

        def refuse() -> NoReturn:
            raise _overloaded(app, waited)

        return refuse

    state.path.add_layer("shed", shed_layer)
    state.path.add_look(app, shed_stale_request, first=True)


def _queued_too_long(environ: WSGIEnvironment, exempt: str, limit: float) -> float | None:
    """The seconds the request waited, when it waited longer than ``limit``; else None."""
    stamp = environ.get(_STAMP)
    if stamp is None or ("/" + environ.get("PATH_INFO", "").lstrip("/")).startswith(exempt):
        return None
    arrived = arrival_time(stamp)
    if arrived is None:
        return None
    waited = time.time() - arrived
    return waited if waited > limit else None


def _overloaded(app: Flask, waited: float) -> Overloaded:
    signals.send(signals.request_shed, app, waited=waited)
    return Overloaded(
        f"The server is overloaded: this request waited {waited:.1f} s to be served."
        f" Try again in {RETRY_AFTER} s.",
        headers={"Retry-After": str(RETRY_AFTER)},
        queue_seconds=round(waited, 3),
    )


def _refusal_unseen(app: Flask, state: ResilienceState) -> bool:
    """Whether a refusal would meet none but the extension's code in Flask: then the
    layer may answer it without Flask."""
    return (
        state.path.refusals_unseen
        and state.settings.error_format != "off"
        and not _has_handler_for_overloaded(app)
        and not pipeline.flask_signals_heard()
    )


def _has_handler_for_overloaded(app: Flask) -> bool:
    """Whether the app, or any of its blueprints, has an error handler for 503 or for a
    class of :class:`Overloaded`; they are all registered before the first request."""
    classes = set(Overloaded.__mro__)
    for by_code in app.error_handler_spec.values():
        if by_code.get(503):
            return True
        if any(cls in classes for cls in by_code.get(None, {})):
            return True
    return False
