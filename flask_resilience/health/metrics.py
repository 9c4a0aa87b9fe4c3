"""Prometheus metrics of one app, in a registry of its own.

Each app gets its own ``CollectorRegistry``, so two apps in one process (tests, an
application factory) never register a metric twice in the global one.

Under gunicorn every worker counts its own requests. With the environment
variable ``PROMETHEUS_MULTIPROC_DIR`` set (before the app is imported) the values
live in files in that folder, and a scrape served by any worker reads all of them
through ``MultiProcessCollector``: counts are summed over workers, process gauges
are kept per ``pid`` and pool gauges summed over live workers.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from .. import signals

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "mark_process_dead", "multiprocess_mode"]

BREAKER_STATES = ("closed", "open", "half-open", "forced-open", "forced-closed")
_LEVELS = {"healthy": 0, "warning": 1, "critical": 2}


def multiprocess_mode() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of a process that serves no more requests.

    gunicorn's ``child_exit`` hook calls it for a dead worker; every new worker, for
    the master. Two workers may do it at once: a file the other removed is gone.
    """
    if multiprocess_mode():
        with contextlib.suppress(FileNotFoundError):
            prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Metrics:
    """The metric objects of one app and the exposition of a scrape."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        # In multiprocess mode values go to files; a scrape builds its own registry.
        self.registry = CollectorRegistry(auto_describe=True)
        registry = None if self.multiprocess else self.registry

        def gauge(name: str, doc: str, labels: tuple[str, ...] = (), mode: str = "all") -> Gauge:
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode=mode)  # type: ignore[arg-type]

        self.requests = Counter(
            "resilience_http_requests",
            "Requests served, by endpoint, method and status.",
            ("endpoint", "method", "status"),
            registry=registry,
        )
        self.errors = Counter(
            "resilience_http_errors",
            "Requests answered with a 5xx status, by endpoint.",
            ("endpoint",),
            registry=registry,
        )
        self.latency = Histogram(
            "resilience_http_request_duration_seconds",
            "Time from the start of a request to its response, by endpoint and status.",
            ("endpoint", "status"),
            registry=registry,
        )
        self.pool = gauge(
            "resilience_db_pool_connections",
            "Connections of each engine's pool, by bind and state: checked_out (in use),"
            " checked_in (idle) and overflow (opened above the pool's size).",
            ("bind", "state"),
            "livesum",
        )
        self.pool_capacity = gauge(
            "resilience_db_pool_capacity_connections",
            "The most connections each engine's pool may hold: its size plus max_overflow.",
            ("bind",),
            "livesum",
        )
        self.system = gauge(
            "resilience_system_usage_ratio",
            "Host or container usage (cpu, memory, disk), from 0 to 1.",
            ("resource",),
            "livemostrecent",
        )
        self.process_rss = gauge(
            "resilience_process_resident_memory_bytes", "Resident memory.", mode="liveall"
        )
        self.process_threads = gauge("resilience_process_threads", "Threads.", mode="liveall")
        self.process_fds = gauge(
            "resilience_process_open_fds", "Open file descriptors.", mode="liveall"
        )
        self.breakers = gauge(
            "resilience_circuit_breaker_state",
            "1 for the current state of each circuit breaker (closed, open, half-open,"
            " forced-open, forced-closed), 0 for the others.",
            ("name", "state"),
            "livemax",
        )
        self.bulkhead_in_use = gauge(
            "resilience_bulkhead_in_use",
            "Calls a bulkhead lets through right now, by bulkhead.",
            ("name",),
            "livesum",
        )

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.retries = counter("resilience_retries", "Retries made, by function.", ("name",))
        self.retry_budget_exhausted = counter(
            "resilience_retry_budget_exhausted",
            "Retries given up because the retry budget had no room, by function.",
            ("name",),
        )
        self.breaker_transitions = counter(
            "resilience_circuit_breaker_transitions",
            "State changes of each circuit breaker, by the state it went to.",
            ("name", "to"),
        )
        self.bulkhead_rejected = counter(
            "resilience_bulkhead_rejected", "Calls a full bulkhead refused.", ("name",)
        )
        self.requests_shed = counter(
            "resilience_requests_shed", "Requests refused for having queued too long."
        )
        self.deadline_exceeded = counter(
            "resilience_deadline_exceeded",
            "Requests answered 504 for their deadline, by what was cut short (database,"
            " outbound, interrupted, request).",
            ("where",),
        )
        self.rate_limited = counter("resilience_rate_limited", "Requests answered 429.")
        self.dependency_unavailable = counter(
            "resilience_dependency_unavailable",
            "Requests that met a dependency down: database, pool, breaker, limiter storage.",
            ("dependency",),
        )
        self.alert_level = gauge(
            "resilience_alert_level",
            "The monitor's level: 0 healthy, 1 warning, 2 critical.",
            mode="livemax",
        )

    def record_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.record_many([(0.0, seconds, status, endpoint, method)])

    def record_many(self, batch: Iterable[tuple[float, float, int, str, str]]) -> None:
        """Count a batch of ``(at, seconds, status, endpoint, method)``, once per key."""
        groups: dict[tuple[str, str, int], list[float]] = {}
        for _at, seconds, status, endpoint, method in batch:
            groups.setdefault((endpoint, method, status), []).append(seconds)
        for (endpoint, method, status), durations in groups.items():
            count, latency, errors = self._children_of(endpoint, method, status)
            count.inc(len(durations))
            if errors is not None:
                errors.inc(len(durations))
            _observe_all(latency, durations)

    def _children_of(self, endpoint: str, method: str, status: int) -> tuple[Any, Any, Any]:
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds tuples: do it once per key
            code = str(status)
            children = (
                self.requests.labels(endpoint, method, code),
                self.latency.labels(endpoint, code),
                self.errors.labels(endpoint) if status >= 500 else None,
            )
            self._children[key] = children
        return children

    def update(
        self,
        *,
        system: Mapping[str, float | None],
        process: Mapping[str, Any],
        pools: Mapping[str, Mapping[str, Any]],
        breakers: Any,
        level: str,
        bulkheads: Mapping[str, Any] | None = None,
    ) -> None:
        """Set every gauge from fresh readings."""
        for resource, value in system.items():
            if value is not None:
                self.system.labels(resource).set(value / 100)
        self.process_rss.set(process["rss_bytes"])
        self.process_threads.set(process["threads"])
        self.process_fds.set(process["open_files"])
        for bind, status in pools.items():
            for key in ("checked_out", "checked_in", "overflow"):
                if status.get(key) is not None:
                    self.pool.labels(bind, key).set(status[key])
            size, overflow = status.get("size"), status.get("limits", {}).get("max_overflow", 0)
            if size is not None and overflow is not None and overflow >= 0:
                self.pool_capacity.labels(bind).set(size + overflow)
        for name, current in _breaker_states(breakers).items():
            for state in BREAKER_STATES:
                self.breakers.labels(name, state).set(int(state == current))
        for name, snapshot in (bulkheads or {}).items():
            if isinstance(snapshot, Mapping) and isinstance(snapshot.get("in_use"), int):
                self.bulkhead_in_use.labels(str(name)).set(snapshot["in_use"])
        self.alert_level.set(_LEVELS.get(level, 0))

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))


def _observe_all(histogram: Any, durations: list[float]) -> None:
    """``histogram.observe`` for each duration, with one increment per bucket.

    Uses the histogram's bucket values the way its own ``observe`` does (each
    observation lands in the first bucket whose bound is not below it); a
    prometheus_client without them gets the observations one by one.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for seconds in durations:  # pragma: no cover - another prometheus_client
            histogram.observe(seconds)
        return
    counts = [0] * len(bounds)
    for seconds in durations:
        counts[bisect.bisect_left(bounds, seconds)] += 1
    total.inc(sum(durations))
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def _breaker_states(breakers: Any) -> dict[str, str]:
    """The state by name from the circuit-breaker provider: ``{name: state}`` or
    ``{name: {"state": state, ...}}``; anything else is ignored."""
    states: dict[str, str] = {}
    if not isinstance(breakers, Mapping):
        return states
    for name, value in breakers.items():
        state = value.get("state") if isinstance(value, Mapping) else value
        if isinstance(state, str) and state.lower().replace("_", "-") in BREAKER_STATES:
            states[str(name)] = state.lower().replace("_", "-")
    return states


_signal_receivers: list[Callable[..., None]] = []


def count_signals(metrics_of: Callable[[Any], Metrics | None]) -> None:
    """Count what the parts signal (flask_resilience.signals) in the metrics of its sender.

    Connected once per process, for every app: ``metrics_of`` finds the sending
    app's metrics (``None`` for an app without them, or no app). A receiver of
    each app, connected for that app as sender, would leave blinker a weak
    reference to every app to clean up when it goes, and blinker's cleanup is not
    safe from a thread while another connects.
    """
    if _signal_receivers:
        return

    def counting(signal: Any, count: Callable[..., None]) -> None:
        def receiver(sender: Any, **data: Any) -> None:
            metrics = metrics_of(sender)
            if metrics is not None:
                count(metrics, **data)

        _signal_receivers.append(receiver)  # the signal holds it weakly
        signal.connect(receiver)

    counting(signals.call_retried, lambda m, name, **_: m.retries.labels(name).inc())
    counting(
        signals.retry_budget_exhausted,
        lambda m, name, **_: m.retry_budget_exhausted.labels(name).inc(),
    )
    counting(
        signals.breaker_state_changed,
        lambda m, name, new, **_: m.breaker_transitions.labels(name, new).inc(),
    )
    counting(signals.bulkhead_rejected, lambda m, name, **_: m.bulkhead_rejected.labels(name).inc())
    counting(signals.request_shed, lambda m, **_: m.requests_shed.inc())
    counting(
        signals.deadline_exceeded, lambda m, where, **_: m.deadline_exceeded.labels(where).inc()
    )
    counting(signals.rate_limited, lambda m, **_: m.rate_limited.inc())
    counting(
        signals.dependency_unavailable,
        lambda m, dependency, **_: m.dependency_unavailable.labels(dependency).inc(),
    )
