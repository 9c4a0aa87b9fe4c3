"""Health endpoints, checks, request statistics, the background monitor and metrics.

``init_app(app, state)`` mounts the blueprint, registers the built-in checks and
adds the request hook that counts requests and starts the monitor lazily.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blinker import Namespace
from flask import Flask

from ..config import Settings
from ..pipeline import Layer
from ..state import EXTENSION_KEY, HealthCheck, ResilienceState
from . import builtin
from . import metrics as metrics_module
from .checks import CheckRunner, HealthResult
from .metrics import Metrics
from .monitor import (
    Alert,
    FileSwitch,
    Monitor,
    RedisSwitch,
    Sample,
    Switch,
    Thresholds,
    call_safely,
    logger,
)
from .shared import (
    LIVE_BODY,
    Availability,
    HealthState,
    all_checks,
    health_state,
    pools,
    provided,
)
from .stats import Counted, RequestLog, RequestStats
from .system import CpuMeter, current_process, disk_usage, memory_usage, process_metrics
from .workers import (
    FOLDER,
    HISTORY,
    WorkerSnapshots,
    breaker_summary,
    bulkhead_summary,
    counter_total,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = [
    "Alert",
    "Availability",
    "HealthCheck",
    "HealthResult",
    "HealthState",
    "Sample",
    "alert_raised",
    "finish_startup",
    "health_state",
    "init_app",
    "worker_snapshot",
    "write_worker_snapshot",
]

_signals = Namespace()
alert_raised = _signals.signal("resilience-alert")
"""Sent on every level change of a monitored metric: ``sender`` is the app,
``alert`` the :class:`Alert`."""

BLUEPRINT = "resilience_health"
"""The permission that opens detailed health, metrics, the dashboard and the switch."""

SWITCH_FILE = "resilience-monitor.json"


def init_app(app: Flask, state: ResilienceState) -> None:
    settings = state.settings
    if not settings.health_enabled:
        return
    metrics_module.count_signals(_metrics_of)
    from .blueprint import blueprint

    health = state.add(_build(app, state))
    # A worker that exits (gunicorn's max_requests, a shutdown) counts what it served
    # since the monitor's last round, instead of leaving it in its queue.
    state.add_cleanup(health.requests.drain, name="request metrics")
    state.add_cleanup(health.workers.remove, name="dashboard snapshot")
    prefix = settings.health_url_prefix
    app.register_blueprint(blueprint, url_prefix=prefix)
    if settings.tracemalloc and not tracemalloc.is_tracing():
        tracemalloc.start()
    shadowed: set[str] = set()
    state.path.on_first_request(lambda: shadowed.update(_let_app_routes_win(app)))
    state.path.on_first_request(lambda: _warn_unknown_group_members(state, health))
    state.path.add_layer("liveness", _timing_and_liveness(app, health, prefix, shadowed))


def finish_startup(state: ResilienceState, seconds: float) -> None:
    """Called at the end of ``init_app``, the startup checks done: the startup probe passes.

    :param seconds: how long ``init_app`` took, shown by the startup probe.
    """
    health = state.find(HealthState)
    if health is not None:
        health.finish_startup(seconds)


def _warn_unknown_group_members(state: ResilienceState, health: HealthState) -> None:
    """At the first request every check is registered: name the group members that are not.

    Not at ``init_app``, which may run before the app registers its own checks.
    """
    known = {check.name for check in all_checks(state)}
    for group, members in health.groups.items():
        unknown = [name for name in members if name not in known]
        if unknown:
            health.warn_unknown_once(group, unknown)


def _let_app_routes_win(app: Flask) -> set[str]:
    """Serve the app's own view where it has a route at one of the health paths.

    Many apps have their own ``/health``; Werkzeug matches the rule added first,
    which may be the blueprint's. Each path the app claims for the same methods
    is handed back to the app's view. Runs before the first request, when every
    route is known.

    :return: the paths handed back.
    """
    rules = list(app.url_map.iter_rules())
    ours = [rule for rule in rules if rule.endpoint.startswith(f"{BLUEPRINT}.")]
    handed_back: set[str] = set()
    for rule in ours:
        for other in rules:
            if (
                other.rule == rule.rule
                and not other.endpoint.startswith(f"{BLUEPRINT}.")
                and (rule.methods or set()) & (other.methods or set()) - {"HEAD", "OPTIONS"}
            ):
                app.view_functions[rule.endpoint] = app.view_functions[other.endpoint]
                handed_back.add(rule.rule)
                logger.bound_to(app).info(
                    "%s is the app's own route; the health endpoint there is not mounted",
                    rule.rule,
                )
                break
    return handed_back


def _metrics_of(sender: Any) -> Metrics | None:
    """The metrics of the app that sent a signal, if it has them."""
    state = sender.extensions.get(EXTENSION_KEY) if isinstance(sender, Flask) else None
    health = state.find(HealthState) if isinstance(state, ResilienceState) else None
    return health.metrics if health is not None else None


def _build(app: Flask, state: ResilienceState) -> HealthState:
    settings = state.settings
    limits = settings.alert_thresholds
    margin = settings.alert_warning_margin
    timeout = settings.health_check_timeout
    checks = [
        *builtin.database_checks(app, state.db),
        *builtin.redis_checks(settings.monitor_redis_url, timeout),
        *builtin.disk_checks(app, limits["disk_usage"], margin),
        builtin.memory_check(limits["memory_usage"], margin),
    ]
    runner = CheckRunner(
        timeout=timeout,
        ttl=settings.health_cache_ttl,
        ttl_failed=settings.health_cache_ttl_failed,
    )
    stats = RequestStats()
    metrics = Metrics()

    def count(batch: list[Counted]) -> None:
        stats.record_many(batch)
        metrics.record_many(batch)

    cpu = CpuMeter()
    health = HealthState(
        runner=runner,
        builtin_checks=checks,
        stats=stats,
        monitor=None,  # type: ignore[arg-type]  # set below: it samples through health
        metrics=metrics,
        requests=RequestLog(count, skip_prefix=f"{BLUEPRINT}."),
        cpu=cpu,
        request_cpu=CpuMeter(),
        process=current_process(),
        disk_path=app.instance_path,
        workers=WorkerSnapshots(Path(app.instance_path) / FOLDER, settings.monitor_interval),
        log=logger.bound_to(app),
        groups=settings.health_groups,
    )
    health.monitor = Monitor(
        interval=settings.monitor_interval,
        history=settings.monitor_history,
        thresholds=Thresholds(limits, margin=margin, hysteresis=settings.alert_hysteresis),
        collect=lambda: collect_sample(app, state, health),
        on_alert=lambda alert: _announce(app, state, alert),
        switch=_switch(app, settings),
        leak_samples=settings.monitor_leak_samples,
        gc_on_critical=settings.monitor_gc_on_critical,
        # Every worker's counts reach the shared metrics, and its snapshot the
        # dashboard, within one interval.
        housekeeping=lambda: write_worker_snapshot(app, state, health),
        log=logger.bound_to(app),
    )
    return health


def _switch(app: Flask, settings: Settings) -> Switch:
    default = settings.monitor_enabled
    url = settings.monitor_redis_url
    if url:
        return RedisSwitch(url, default, logger.bound_to(app))
    return FileSwitch(Path(app.instance_path) / SWITCH_FILE, default)


def _announce(app: Flask, state: ResilienceState, alert: Alert) -> None:
    log = logger.bound_to(app)
    call_safely(list(state.alert_callbacks), alert, log)
    try:
        alert_raised.send(app, alert=alert)
    except Exception:
        log.exception("A receiver of the alert signal raised")


_READ = ("GET", "HEAD")


def _live_headers(body: bytes) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/health+json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]


_LIVE_HEADERS = tuple(_live_headers(LIVE_BODY))


def _timing_and_liveness(
    app: Flask, health: HealthState, live_prefix: str, app_paths: set[str]
) -> Layer:
    """Time every request and start the monitor with a process's first request.

    This runs on every request, so it is a WSGI wrapper rather than Flask hooks
    (which cost more than the counting): it reads the endpoint from Flask's request
    while the response starts, and leaves the counting to :class:`RequestLog`.
    The wrapper also answers liveness itself, before Flask: it is polled often and
    must not depend on anything a later part adds to the request.
    """
    monitor, finished = health.monitor, health.requests.add
    pid = [0]  # no process has served a request yet
    live_path = live_prefix + "/live"

    def layer(wsgi_app: WSGIApplication) -> WSGIApplication:
        def timed_wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
            if pid[0] != os.getpid():  # the first request of this process (a forked worker)
                pid[0] = os.getpid()
                health.reset_after_fork()
                if not app.testing:  # a test suite's many apps would each get a thread
                    monitor.ensure_started()
            method = environ.get("REQUEST_METHOD", "GET")
            live = environ.get("PATH_INFO") == live_path and live_path not in app_paths
            if live and method in _READ:
                # Liveness says the process serves: nothing else runs, no hook, no I/O.
                # Unless the app marked itself broken: then the orchestrator restarts it.
                broken = health.broken_body
                if broken is not None:
                    start_response("503 SERVICE UNAVAILABLE", _live_headers(broken))
                    return [] if method == "HEAD" else [broken]
                start_response("200 OK", list(_LIVE_HEADERS))
                return [] if method == "HEAD" else [LIVE_BODY]
            started = time.monotonic()

            def start_timed_response(status: str, headers: Any, exc_info: Any = None) -> Any:
                # Flask's request is still in the environ while the response starts.
                current = environ.get("werkzeug.request")
                endpoint = getattr(current, "endpoint", None)
                ended = time.monotonic()
                finished((ended, ended - started, status, endpoint, method))
                return start_response(status, headers, exc_info)

            return wsgi_app(environ, start_timed_response)

        return timed_wsgi_app

    return layer


def pool_capacity_used(pools: dict[str, dict[str, Any]]) -> float | None:
    """The highest share of pool capacity (size + overflow) in use, in percent."""
    shares = []
    for status in pools.values():
        size, overflow = status.get("size"), status["limits"].get("max_overflow", 0)
        if size is None or overflow is None or overflow < 0 or size + overflow <= 0:
            continue
        shares.append(100.0 * status["checked_out"] / (size + overflow))
    return round(max(shares), 2) if shares else None


def collect_sample(app: Flask, state: ResilienceState, health: HealthState) -> Sample:
    """One monitor sample; runs on the monitor's thread."""
    with app.app_context():
        engine_pools = pools(state)
        breakers = provided(state, "circuit_breakers")
        bulkheads = provided(state, "bulkheads")
    cpu, process_cpu = health.cpu.read()
    health.requests.drain()
    window = health.stats.window(60)
    process = process_metrics(health.process)
    sample = Sample(
        time=time.time(),
        cpu_usage=cpu,
        memory_usage=memory_usage()["percent"],
        disk_usage=disk_usage(health.disk_path)["percent"],
        response_time=window["latency_p95"],
        error_rate=window["error_rate"] if window["requests"] else None,
        db_connections=pool_capacity_used(engine_pools),
        process_cpu=process_cpu,
        rss_bytes=process["rss_bytes"],
        requests_per_second=window["requests_per_second"],
    )
    health.metrics.update(
        system={"cpu": cpu, "memory": sample.memory_usage, "disk": sample.disk_usage},
        process=process,
        pools=engine_pools,
        breakers=breakers,
        level=health.monitor.level,
        bulkheads=bulkheads,
    )
    health.last_sample[:] = [sample]
    return sample


def worker_snapshot(app: Flask, state: ResilienceState, health: HealthState) -> dict[str, Any]:
    """What this worker shows the dashboard: its recent samples, requests, 429s,
    breakers and bulkheads. Times are Unix seconds."""
    health.requests.drain()
    with app.app_context():
        breakers = breaker_summary(provided(state, "circuit_breakers"))
        bulkheads = bulkhead_summary(provided(state, "bulkheads"))
    monitor = health.monitor
    window = health.stats.window(60)
    return {
        "pid": os.getpid(),
        "written_at": time.time(),
        "monitor": {
            "state": monitor.state,
            "level": monitor.level,
            "interval_seconds": monitor.interval,
        },
        "history": [sample.as_dict() for sample in list(monitor.history)[-HISTORY:]],
        "requests": {
            "total": health.stats.total,
            "total_errors": health.stats.total_errors,
            "requests_per_second": window["requests_per_second"],
            "latency_p95": window["latency_p95"],
            "error_rate": window["error_rate"],
        },
        # The counts the metrics already keep from the parts' signals, not counted again.
        "rate_limited": counter_total(health.metrics.rate_limited),
        "breakers": breakers,
        "bulkheads": bulkheads,
    }


def write_worker_snapshot(app: Flask, state: ResilienceState, health: HealthState) -> None:
    """Write this worker's snapshot for the dashboard; the monitor's thread calls it
    every interval, sampling or not. A folder it cannot write to is logged once
    (again after a write succeeded), and the monitor carries on."""
    snapshot = worker_snapshot(app, state, health)
    try:
        health.workers.write(snapshot)
    except OSError:
        if not health.workers.failing:  # once, not every interval
            folder = health.workers.folder
            message = "Writing the dashboard's snapshot to %s failed"
            health.log.warning(message, folder, exc_info=True)
        health.workers.failing = True
    else:
        health.workers.failing = False
