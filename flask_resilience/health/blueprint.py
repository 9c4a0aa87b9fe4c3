"""The health routes.

``/health``, ``/health/live``, ``/health/ready``, ``/health/startup`` and
``/health/group/<name>`` are public and answer in the format of the IETF health
check draft (``application/health+json``): no check's output, no address, no
null member, times in ISO 8601. The others show internals and need the bearer
token or the health permission, as do the operator's switches (``POST
/monitoring/start|stop``, ``POST /availability``, ``POST
/breakers/<name>/open|close|reset``), and ``/dashboard/data``, every worker's snapshot.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import tracemalloc
from collections.abc import Callable
from importlib import resources
from typing import Any, ParamSpec

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import BadRequest, Forbidden, NotFound, Unauthorized

from ..errors import ProblemError
from ..state import HealthCheck, ResilienceState, get_state
from .checks import Outcome, iso_time, worst
from .metrics import CONTENT_TYPE_LATEST
from .shared import (
    LIVE_BODY,
    PERMISSION,
    HealthState,
    all_checks,
    pools,
    provided,
    reason_text,
    run_checks,
)
from .system import disk_usage, memory_usage, process_metrics
from .workers import instance_totals

blueprint = Blueprint("resilience_health", __name__)

P = ParamSpec("P")

HEALTH_JSON = "application/health+json"


class HealthUnauthorized(ProblemError, Unauthorized):
    """No valid credentials for a protected health endpoint."""

    kind = "health-credentials-missing"


class HealthForbidden(ProblemError, Forbidden):
    """Credentials were given but do not open this health endpoint."""

    kind = "health-credentials-refused"


class HealthGroupUnknown(ProblemError, NotFound):
    """No health group of that name in ``RESILIENCE_HEALTH_GROUPS``."""

    kind = "health-group-unknown"


class AvailabilityInvalid(ProblemError, BadRequest):
    """A ``POST /health/availability`` whose body does not say a state to take."""

    kind = "health-availability-invalid"


class HealthNotFound(ProblemError, NotFound):
    """What a protected health endpoint was asked to change does not exist."""

    kind = "health-target-unknown"


def _state() -> ResilienceState:
    return get_state()


def _health() -> HealthState:
    return get_state().get(HealthState)  # the blueprint is only mounted with health on


def answer_body(value: Any, key: str = "") -> Any:
    """``value`` as the answers show it: no null member, Unix times in ISO 8601.

    A member whose value is ``None`` is left out (the draft's members are optional;
    a reader tells "absent" from "zero"). A number under ``time`` or a name ending in
    ``_at`` is a Unix time, written as the draft writes times.
    """
    if isinstance(value, dict):
        return {
            name: answer_body(item, str(name)) for name, item in value.items() if item is not None
        }
    if isinstance(value, (list, tuple)):
        return [answer_body(item) for item in value]
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if is_number and (key == "time" or key.endswith("_at")):
        return iso_time(value)
    return value


def _health_response(body: dict[str, Any], status: str, *, max_age: float | None) -> Response:
    response = Response(
        json.dumps(answer_body(body), default=str),
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


def _public_checks(outcomes: dict[str, Outcome]) -> dict[str, list[dict[str, Any]]]:
    return {name: [outcome.summary()] for name, outcome in sorted(outcomes.items())}


def _trouble(outcomes: dict[str, Outcome]) -> str | None:
    """Which checks fail and which warn, with their component types: the top-level
    ``output`` of a public answer, which shows no check's own output.

    ``failing: database:responseTime (datastore); warning: ratelimit:storage (datastore)``
    """
    parts = []
    for status, label in (("fail", "failing"), ("warn", "warning")):
        names = [
            f"{name} ({outcome.component_type})"
            for name, outcome in sorted(outcomes.items())
            if outcome.status == status
        ]
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    return "; ".join(parts) or None


def _checks_answer(outcomes: dict[str, Outcome], status: str, *notes: str) -> Response:
    trouble = _trouble(outcomes) if status != "pass" else None
    body: dict[str, Any] = {
        "status": status,
        "output": "; ".join([*notes, *filter(None, [trouble])]) or None,
        "checks": _public_checks(outcomes),
    }
    return _health_response(body, status, max_age=_max_age(status))


def _app() -> Flask:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app


@blueprint.get("")
def overall() -> Response:
    outcomes = run_checks(_app(), _state())
    return _checks_answer(outcomes, _overall(outcomes))


def _broken_response(reason: str) -> Response:
    return _health_response({"status": "fail", "output": f"broken: {reason}"}, "fail", max_age=None)


@blueprint.get("/live")
def live() -> Response:
    """No I/O and no check: answering at all is the proof of life, unless the app
    marked itself broken.

    The app's WSGI wrapper answers this path before Flask; the route serves
    ``url_for`` and an app mounted where the wrapper does not see the path.
    """
    broken = _health().availability.broken
    if broken is not None:
        return _broken_response(broken)
    return Response(LIVE_BODY, mimetype=HEALTH_JSON, headers={"Cache-Control": "no-store"})


@blueprint.get("/ready")
def ready() -> Response:
    state = _state()
    if state.draining.is_set():
        draining = {"status": "fail", "output": "draining: the process is shutting down"}
        return _health_response(draining, "fail", max_age=None)
    refusing = _health().availability.refusing
    if refusing is not None:
        refused = {"status": "fail", "output": f"refusing traffic: {refusing}"}
        return _health_response(refused, "fail", max_age=None)
    outcomes = run_checks(_app(), state, critical_only=True)
    return _checks_answer(outcomes, worst(o.status for o in outcomes.values()))


STARTUP_CHECK = "startup:duration"


@blueprint.get("/startup")
def startup() -> Response:
    """Passes once ``init_app`` has finished, the startup checks included, and a request
    has come through the whole app to this view; fails while the app is marked broken.

    The probe's own request runs the first-request set-up and the app's hooks, which
    liveness skips: the first pass says the app serves requests, not only the process.
    """
    health = _health()
    broken = health.availability.broken
    if broken is not None:
        return _broken_response(broken)
    entry: dict[str, Any]
    if health.started_at is None:
        entry = {"status": "fail", "componentType": "component", "time": iso_time()}
        starting = {
            "status": "fail",
            "output": "starting: init_app has not finished",
            "checks": {STARTUP_CHECK: [entry]},
        }
        return _health_response(starting, "fail", max_age=None)
    entry = {
        "status": "pass",
        "componentType": "component",
        "observedValue": health.startup_seconds,
        "observedUnit": "s",
        "time": health.started_at,
    }
    return _health_response(
        {"status": "pass", "checks": {STARTUP_CHECK: [entry]}}, "pass", max_age=None
    )


@blueprint.get("/group/<name>")
def group(name: str) -> Response:
    """The checks of one ``RESILIENCE_HEALTH_GROUPS`` group: any of them failing fails it.

    A member that is not a registered check fails the group (a misspelt name must
    not pass for ever) and is logged once.
    """
    state, health = _state(), _health()
    members = health.groups.get(name)
    if members is None:
        raise HealthGroupUnknown(f"There is no health group {name!r}.")
    checks = {check.name: check for check in all_checks(state)}
    unknown = [member for member in members if member not in checks]
    chosen: list[HealthCheck] = [checks[member] for member in members if member in checks]
    outcomes = health.runner.run(chosen, _app().app_context)
    if unknown:
        health.warn_unknown_once(name, unknown)
        for member in unknown:
            outcomes[member] = Outcome(member, "fail", True, 0.0, iso_time())
    status = worst(outcome.status for outcome in outcomes.values())
    notes = [f"not a registered check: {', '.join(unknown)}"] if unknown else []
    return _checks_answer(outcomes, status, *notes)


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
    outcomes = run_checks(_app(), state)
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
        "time": iso_time(),
        "draining": state.draining.is_set(),
        "availability": health.availability.as_dict(),
        "startup": {"finished_at": health.started_at, "seconds": health.startup_seconds},
        "groups": {name: list(members) for name, members in health.groups.items()},
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
        bulkheads=provided(state, "bulkheads"),
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


@blueprint.get("/dashboard/data")
@protected
def dashboard_data() -> Response:
    """Every live worker of the instance as the dashboard draws it: each worker's
    snapshot (this one's fresh, the others' from their last monitor interval) and
    what they add up to. Times are Unix seconds."""
    from . import worker_snapshot

    health = _health()
    mine = worker_snapshot(_app(), _state(), health)
    others = [w for w in health.workers.read() if w.get("pid") != mine["pid"]]
    workers = sorted([*others, mine], key=lambda worker: int(worker.get("pid", 0)))
    body = {
        "time": mine["written_at"],
        "answered_by": mine["pid"],
        "instance": instance_totals(workers),
        "workers": workers,
    }
    response = Response(json.dumps(body, default=str), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
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


_READINESS = {"accepting": False, "refusing": True}
_LIVENESS = {"correct": False, "broken": True}


@blueprint.post("/availability")
@protected
def availability() -> Response:
    """Set this process's availability: ``{"readiness": "refusing", "reason": "..."}``,
    ``{"readiness": "accepting"}``, ``{"liveness": "broken", "reason": "..."}`` or
    ``{"liveness": "correct"}`` (both states in one body too).

    A JSON body only: a form another site posts cannot set it.
    """
    data = request.get_json(silent=True)
    usage = (
        'Send a JSON object: {"readiness": "accepting" | "refusing", "liveness": "correct"'
        ' | "broken", "reason": "why"}, with a reason for refusing or broken.'
    )
    if not isinstance(data, dict) or not data.keys() & {"readiness", "liveness"}:
        raise AvailabilityInvalid(usage)
    if data.keys() - {"readiness", "liveness", "reason"}:
        raise AvailabilityInvalid(usage)
    refuse = _READINESS.get(data["readiness"]) if "readiness" in data else False
    broken = _LIVENESS.get(data["liveness"]) if "liveness" in data else False
    if refuse is None or broken is None:
        raise AvailabilityInvalid(usage)
    reason = data.get("reason")
    if refuse or broken:
        try:
            reason = reason_text(reason)
        except ValueError:
            raise AvailabilityInvalid(usage) from None
    health = _health()
    if refuse:
        health.refuse_traffic(reason)
    elif "readiness" in data:
        health.accept_traffic()
    if broken:
        health.mark_broken(reason)
    elif "liveness" in data:
        health.mark_correct()
    body = answer_body({**health.availability.as_dict(), "pid": os.getpid()})
    return Response(json.dumps(body), mimetype="application/json")


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


__all__ = [
    "AvailabilityInvalid",
    "HealthForbidden",
    "HealthGroupUnknown",
    "HealthNotFound",
    "HealthUnauthorized",
    "blueprint",
]
