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
import os
from collections.abc import Iterable, Mapping
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

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "mark_process_dead", "multiprocess_mode"]

# What callers meet: a breaker forced open refuses calls as an open one does, one
# forced closed lets them through; the forced gauge tells them apart.
_BREAKER_STATES = {
    "closed": 0,
    "half-open": 1,
    "half_open": 1,
    "open": 2,
    "forced-open": 2,
    "forced-closed": 0,
}
_FORCED_STATES = {"forced-open", "forced-closed"}
_LEVELS = {"healthy": 0, "warning": 1, "critical": 2}


def multiprocess_mode() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges; call it from gunicorn's ``child_exit`` hook."""
    if multiprocess_mode():
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
            "Connections of each engine's pool, by bind and state (checked_out, checked_in,"
            " overflow, size).",
            ("bind", "state"),
            "livesum",
        )
        self.system = gauge(
            "resilience_system_usage_percent",
            "Host or container usage (cpu, memory, disk) in percent.",
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
            "State of each circuit breaker: 0 closed, 1 half-open, 2 open"
            " (forced open: 2, forced closed: 0).",
            ("name",),
            "livemax",
        )
        self.breakers_forced = gauge(
            "resilience_circuit_breaker_forced",
            "1 while an operator holds a circuit breaker forced open or closed, else 0.",
            ("name",),
            "livemax",
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
    ) -> None:
        """Set every gauge from fresh readings."""
        for resource, value in system.items():
            if value is not None:
                self.system.labels(resource).set(value)
        self.process_rss.set(process["rss_bytes"])
        self.process_threads.set(process["threads"])
        self.process_fds.set(process["open_files"])
        for bind, status in pools.items():
            for key in ("size", "checked_out", "checked_in", "overflow"):
                if status.get(key) is not None:
                    self.pool.labels(bind, key).set(status[key])
        for name, (state, forced) in _breaker_states(breakers).items():
            self.breakers.labels(name).set(state)
            self.breakers_forced.labels(name).set(forced)
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


def _breaker_states(breakers: Any) -> dict[str, tuple[int, int]]:
    """``(state gauge, forced gauge)`` by name from the circuit-breaker provider:
    ``{name: state}`` or ``{name: {"state": state, ...}}``; anything else is ignored."""
    states: dict[str, tuple[int, int]] = {}
    if not isinstance(breakers, Mapping):
        return states
    for name, value in breakers.items():
        state = value.get("state") if isinstance(value, Mapping) else value
        if isinstance(state, str) and state.lower() in _BREAKER_STATES:
            forced = int(state.lower() in _FORCED_STATES)
            states[str(name)] = (_BREAKER_STATES[state.lower()], forced)
    return states
