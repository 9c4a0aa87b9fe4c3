"""The health routes.

``/health``, ``/health/live`` and ``/health/ready`` are public and answer in the
format of the IETF health check draft (``application/health+json``). The others
show internals and need the bearer token or the health permission, as do the
operator's switches (``POST /monitoring/start|stop``, ``POST /breakers/<name>/open|close|reset``).
"""

from __future__ import annotations

import functools
import hmac
import json
import time
import tracemalloc
from collections.abc import Callable
from importlib import resources
from typing import Any, ParamSpec

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import Forbidden, NotFound, Unauthorized

from ..errors import ProblemError
from ..state import ResilienceState, get_state
from .checks import Outcome, worst
from .metrics import CONTENT_TYPE_LATEST
from .shared import LIVE_BODY, PERMISSION, HealthState, pools, provided, run_checks
from .system import disk_usage, memory_usage, process_metrics

blueprint = Blueprint("resilience_health", __name__)

P = ParamSpec("P")

HEALTH_JSON = "application/health+json"


class HealthUnauthorized(ProblemError, Unauthorized):
    """No valid credentials for a protected health endpoint."""


class HealthForbidden(ProblemError, Forbidden):
    """Credentials were given but do not open this health endpoint."""


class HealthNotFound(ProblemError, NotFound):
    """What a protected health endpoint was asked to change does not exist."""


def _state() -> ResilienceState:
    return get_state()


def _health() -> HealthState:
    return get_state().get(HealthState)  # the blueprint is only mounted with health on


def _health_response(body: dict[str, Any], status: str, *, max_age: float | None) -> Response:
    response = Response(
        json.dumps(body, default=str),
        status=503 if status == "fail" else 200,
        mimetype=HEALTH_JSON,
    )
    if max_age is None:
        response.headers["Cache-Control"] = "no-store"
    else:
        response.headers["Cache-Control"] = f"max-age={int(max_age)}"
    return response


def _overall(outcomes: dict[str, Outcome]) -> str:
    """fail when a critical check fails; a failing non-critical check only warns."""
    statuses = [o.status if o.critical or o.status != "fail" else "warn" for o in outcomes.values()]
    return worst(statuses)


def _max_age(status: str) -> float:
    runner = _health().runner
    return float(runner.ttl_failed if status == "fail" else runner.ttl)


@blueprint.get("")
def overall() -> Response:
    state = _state()
    outcomes = run_checks(current_app._get_current_object(), state)  # type: ignore[attr-defined]
    status = _overall(outcomes)
    body: dict[str, Any] = {
        "status": status,
        "checks": {name: [outcome.summary()] for name, outcome in sorted(outcomes.items())},
    }
    return _health_response(body, status, max_age=_max_age(status))


@blueprint.get("/live")
def live() -> Response:
    """No I/O and no check: answering at all is the proof of life.

    The app's WSGI wrapper answers this path before Flask; the route serves
    ``url_for`` and an app mounted where the wrapper does not see the path.
    """
    return Response(LIVE_BODY, mimetype=HEALTH_JSON, headers={"Cache-Control": "no-store"})


@blueprint.get("/ready")
def ready() -> Response:
    state = _state()
    if state.draining.is_set():
        draining = {"status": "fail", "output": "draining: the process is shutting down"}
        return _health_response(draining, "fail", max_age=None)
    outcomes = run_checks(current_app._get_current_object(), state, critical_only=True)  # type: ignore[attr-defined]
    status = worst(o.status for o in outcomes.values())
    body: dict[str, Any] = {
        "status": status,
        "checks": {name: [outcome.summary()] for name, outcome in sorted(outcomes.items())},
    }
    return _health_response(body, status, max_age=_max_age(status))


# Set by callers inside the process (``flask resilience status``), which hold the
# app already. A client cannot set it: servers put what clients send under HTTP_*.
IN_PROCESS_CALLER = "flask_resilience.in_process"


def require_access() -> None:
    """Let the request through with the bearer token or the health permission.

    Without a token configured the protected endpoints are open only in debug mode.
    """
    if request.environ.get(IN_PROCESS_CALLER):
        return
    state = _state()
    token: str | None = state.settings.health_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    bearer = given.strip() if scheme.lower() == "bearer" else ""
    if token and bearer and hmac.compare_digest(bearer.encode(), token.encode()):
        return
    if _guards_permission(PERMISSION):
        return
    if not token:
        if current_app.debug:
            return
        raise HealthForbidden(
            "This endpoint is closed: set RESILIENCE_HEALTH_TOKEN"
            f" or grant the {PERMISSION!r} permission."
        )
    detail = "The bearer token is not valid." if bearer else "A bearer token is required."
    raise HealthUnauthorized(detail, headers={"WWW-Authenticate": 'Bearer realm="health"'})


def protected(view: Callable[P, Response]) -> Callable[P, Response]:
    """Check access in the view itself, so that the public probes pay nothing for it.

    OPTIONS never reaches the view: Flask answers it.
    """

    @functools.wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> Response:
        require_access()
        return view(*args, **kwargs)

    return guarded


def _guards_permission(name: str) -> bool:
    """Whether the request's user holds ``name`` through the guards' permission loader."""
    check = _state().permission_check
    return check is not None and check(name)


def _score(outcomes: dict[str, Outcome], level: str) -> int:
    """100, less 40 for each failed critical check, 15 for another failed check,
    5 for each warning, and 10 or 30 for the monitor's warning or critical level."""
    score = 100
    for outcome in outcomes.values():
        if outcome.status == "fail":
            score -= 40 if outcome.critical else 15
        elif outcome.status == "warn":
            score -= 5
    score -= {"healthy": 0, "warning": 10, "critical": 30}[level]
    return max(0, min(100, score))


@blueprint.get("/detailed")
@protected
def detailed() -> Response:
    state = _state()
    health = _health()
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    outcomes = run_checks(app, state)
    status = _overall(outcomes)
    monitor = health.monitor
    history = request.args.get("history", type=int)
    cpu, process_cpu = health.cpu_now()
    process = process_metrics(health.process)
    process["cpu_percent"] = process_cpu
    body: dict[str, Any] = {
        "status": status,
        "version": state.settings.health_version,
        "score": _score(outcomes, monitor.level),
        "time": time.time(),
        "draining": state.draining.is_set(),
        "checks": {name: [o.detail()] for name, o in sorted(outcomes.items())},
        "checks_still_running": health.runner.running(),
        "system": {
            "cpu_percent": cpu,
            "memory": memory_usage(),
            "disk": disk_usage(health.disk_path),
        },
        "process": process,
        "pools": pools(state),
        "requests": _request_statistics(health),
        "monitor": monitor.snapshot(history),
    }
    for name in ("circuit_breakers", "rate_limit"):
        body[name] = provided(state, name)
    for name in sorted(set(state.detail_providers) - {"circuit_breakers", "rate_limit", "pools"}):
        body[name] = provided(state, name)
    if state.settings.tracemalloc and request.args.get("tracemalloc"):
        body["tracemalloc"] = _top_allocations()
    return _health_response(body, status, max_age=None)


def _request_statistics(health: HealthState) -> dict[str, Any]:
    health.requests.drain()
    return health.stats.snapshot()


def _top_allocations(limit: int = 10) -> list[dict[str, Any]]:
    if not tracemalloc.is_tracing():
        return []
    snapshot = tracemalloc.take_snapshot()
    return [
        {"where": str(stat.traceback), "size_bytes": stat.size, "count": stat.count}
        for stat in snapshot.statistics("lineno")[:limit]
    ]


@blueprint.get("/metrics")
@protected
def metrics() -> Response:
    state = _state()
    health = _health()
    process = process_metrics(health.process)
    cpu, _ = health.cpu_now()
    health.metrics.update(
        system={
            "cpu": cpu,
            "memory": memory_usage()["percent"],
            "disk": disk_usage(health.disk_path)["percent"],
        },
        process=process,
        pools=pools(state),
        breakers=provided(state, "circuit_breakers"),
        level=health.monitor.level,
    )
    health.requests.drain()
    return Response(health.metrics.exposition(), mimetype=None, content_type=CONTENT_TYPE_LATEST)


@blueprint.get("/dashboard")
@protected
def dashboard() -> Response:
    page = resources.files("flask_resilience.health").joinpath("dashboard.html").read_text()
    response = Response(page, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
        " connect-src 'self'; img-src 'self' data:"
    )
    return response


def _switch(enabled: bool) -> Response:
    monitor = _health().monitor
    monitor.turn(enabled)
    body = {"monitoring": monitor.state, "level": monitor.level}
    return Response(json.dumps(body), mimetype="application/json")


@blueprint.post("/monitoring/start")
@protected
def monitoring_start() -> Response:
    return _switch(True)


@blueprint.post("/monitoring/stop")
@protected
def monitoring_stop() -> Response:
    return _switch(False)


@blueprint.post("/breakers/<path:name>/<action>")
@protected
def breaker_switch(name: str, action: str) -> Response:
    """Force a circuit breaker open or closed, or reset it (which releases a forced state).

    Answers the breaker's state as detailed health shows it. With Redis storage
    the change reaches every worker and instance (503 when Redis does not
    answer: it then holds in this worker only); with memory storage, only the
    worker that answers.
    """
    control = _state().controls.get("circuit_breakers")
    if control is None:
        raise HealthNotFound("Circuit breakers are not set up for this app.")
    try:
        body = control(name, action)
    except LookupError:
        raise HealthNotFound(f"No circuit breaker is called {name!r}.") from None
    except ValueError:
        raise HealthNotFound("A breaker can be opened, closed or reset.") from None
    return Response(json.dumps(body), mimetype="application/json")


__all__ = ["HealthForbidden", "HealthNotFound", "HealthUnauthorized", "blueprint"]
