"""The background monitor: one thread per worker process, samples in a ring buffer,
alert levels with hysteresis, and a switch shared by the workers of an instance.

The thread is started by the first request a process serves, never at import:
gunicorn forks its workers after importing the app, and a thread started in the
master would not exist in any worker. The Flask reloader's watching process serves
no request, so it never starts one either.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from ..log import ExtensionLogger

logger = ExtensionLogger("health")

LEVELS = ("healthy", "warning", "critical")
METRICS = (
    "cpu_usage",
    "memory_usage",
    "disk_usage",
    "response_time",
    "error_rate",
    "db_connections",
)
_ALERT_HISTORY = 100


@dataclass(frozen=True)
class Sample:
    """One reading of everything the thresholds apply to (``None``: not measured).

    ``response_time`` is the p95 latency in seconds; ``error_rate`` and the usages are
    percentages; ``db_connections`` is the share of pool capacity in use.
    """

    time: float
    cpu_usage: float | None = None
    memory_usage: float | None = None
    disk_usage: float | None = None
    response_time: float | None = None
    error_rate: float | None = None
    db_connections: float | None = None
    process_cpu: float | None = None
    rss_bytes: int | None = None
    requests_per_second: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Alert:
    """A metric's level changed: passed to ``on_alert`` callbacks and the signal."""

    metric: str
    level: str
    previous: str
    value: float
    threshold: float
    time: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Switch(Protocol):
    """The desired on/off state that every worker of an instance follows."""

    def read(self) -> bool: ...

    def write(self, enabled: bool) -> None: ...


class FileSwitch:
    """The switch as a small JSON file, in the instance folder that workers share."""

    def __init__(self, path: Path, default: bool) -> None:
        self.path = path
        self.default = default

    def read(self) -> bool:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return self.default
        enabled = data.get("enabled") if isinstance(data, dict) else None
        return enabled if isinstance(enabled, bool) else self.default

    def write(self, enabled: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        temporary.write_text(json.dumps({"enabled": enabled, "changed": time.time()}))
        os.replace(temporary, self.path)  # atomic: a reader sees the old or the new file


class RedisSwitch:
    """The switch as a Redis key, for workers that share no file system."""

    key = "flask_resilience:monitor:enabled"

    def __init__(self, url: str, default: bool, log: ExtensionLogger = logger) -> None:
        import redis

        self.log = log
        self.client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.default = default
        self._last = default

    def read(self) -> bool:
        try:
            value = self.client.get(self.key)
        except Exception:  # Redis down: keep doing what the last answer said
            self.log.warning("Reading the monitor switch from Redis failed", exc_info=True)
            return self._last
        self._last = self.default if value is None else value == b"1"
        return self._last

    def write(self, enabled: bool) -> None:
        self.client.set(self.key, b"1" if enabled else b"0")
        self._last = enabled


class Thresholds:
    """Levels of each metric, with a warning margin and hysteresis.

    A value at or above the threshold is critical, at or above
    ``threshold * (1 - margin)`` warning. A level is only left downwards when the
    value is ``threshold * hysteresis`` below the boundary, so a value hovering at
    a threshold does not flap.
    """

    def __init__(self, limits: Mapping[str, float], *, margin: float, hysteresis: float) -> None:
        self.limits = dict(limits)
        self.margin = margin
        self.hysteresis = hysteresis

    def _raw(self, value: float, limit: float) -> int:
        if value >= limit:
            return 2
        return 1 if value >= limit * (1 - self.margin) else 0

    def level(self, metric: str, value: float, current: str) -> str:
        limit = self.limits[metric]
        now = LEVELS.index(current)
        raw = self._raw(value, limit)
        if raw >= now:
            return LEVELS[raw]
        eased = self._raw(value + limit * self.hysteresis, limit)
        return LEVELS[max(raw, min(now, eased))]


class Monitor:
    """Samples on a thread, keeps a bounded history and raises alerts on level changes.

    :param collect: takes one sample; called on the monitor's thread.
    :param on_alert: called for each level change of a metric.
    :param switch: the shared on/off state the thread follows every interval.
    :param housekeeping: called every interval, sampling or not.
    """

    def __init__(
        self,
        *,
        interval: float,
        history: int,
        thresholds: Thresholds,
        collect: Callable[[], Sample],
        on_alert: Callable[[Alert], None],
        switch: Switch,
        leak_samples: int = 30,
        gc_on_critical: bool = False,
        housekeeping: Callable[[], None] | None = None,
        log: ExtensionLogger = logger,
    ) -> None:
        self.interval = interval
        self.log = log
        self.thresholds = thresholds
        self.collect = collect
        self.on_alert = on_alert
        self.switch = switch
        self.leak_samples = leak_samples
        self.gc_on_critical = gc_on_critical
        self.housekeeping = housekeeping
        self.history: deque[Sample] = deque(maxlen=history)
        self.alerts: deque[Alert] = deque(maxlen=_ALERT_HISTORY)
        self.levels = dict.fromkeys(METRICS, "healthy")
        self.active = False
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner_pid: int | None = None

    # -- the thread -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while this process's thread runs and samples."""
        return self.active and self._thread is not None and self._thread.is_alive()

    @property
    def state(self) -> str:
        return "running" if self.running else "stopped"

    def ensure_started(self) -> None:
        """Start the thread once per process; cheap enough to call on every request."""
        if self._owner_pid == os.getpid():
            return
        with self._lock:
            if self._owner_pid == os.getpid():
                return
            if self._owner_pid is not None:  # forked from a process that had started one
                self.history.clear()
                self.alerts.clear()
                self.levels = dict.fromkeys(METRICS, "healthy")
                self._thread = None
            self._owner_pid = os.getpid()
        self.start()

    def start(self) -> None:
        """Start the thread (if it is not running) following the shared switch."""
        with self._lock:
            self._owner_pid = os.getpid()
            if self._thread is not None and self._thread.is_alive():
                return
            self.active = self.switch.read()
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=_run,
                args=(weakref.ref(self), self._stop),
                name="resilience-monitor",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop this process's thread; returns within ``interval + 1`` seconds."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.interval + 1.0)

    def turn(self, enabled: bool) -> None:
        """Turn monitoring on or off in every worker: write the switch, apply it here."""
        self.switch.write(enabled)
        self.active = enabled
        if enabled:
            self.start()

    def tick(self) -> None:
        """One turn of the loop: follow the switch, then take and judge a sample."""
        try:
            if self.housekeeping is not None:  # even while stopped
                self.housekeeping()
            self.active = self.switch.read()
            if self.active:
                self.observe(self.collect())
        except Exception:  # a failing sample must not end monitoring
            self.errors += 1
            self.log.exception("A monitor sample failed; the next one runs as planned")

    # -- judging samples --------------------------------------------------------------

    def observe(self, sample: Sample) -> list[Alert]:
        """Keep ``sample``, update each metric's level and raise alerts for changes."""
        changes: list[Alert] = []
        with self._lock:
            self.history.append(sample)
            for metric in METRICS:
                value = getattr(sample, metric)
                if value is None:
                    continue
                previous = self.levels[metric]
                level = self.thresholds.level(metric, value, previous)
                if level != previous:
                    self.levels[metric] = level
                    alert = Alert(
                        metric, level, previous, value, self.thresholds.limits[metric], sample.time
                    )
                    self.alerts.append(alert)
                    changes.append(alert)
        for alert in changes:
            self._announce(alert)
        return changes

    def _announce(self, alert: Alert) -> None:
        log = self.log.warning if alert.level != "healthy" else self.log.info
        log(
            "%s is %s: %s (threshold %s, was %s)",
            alert.metric,
            alert.level,
            alert.value,
            alert.threshold,
            alert.previous,
        )
        if alert.metric == "memory_usage" and alert.level == "critical" and self.gc_on_critical:
            self.log.warning("Memory is critical; gc.collect() freed %d objects", gc.collect())
        self.on_alert(alert)

    @property
    def level(self) -> str:
        return max(self.levels.values(), key=LEVELS.index)

    def active_alerts(self) -> list[dict[str, Any]]:
        latest = {alert.metric: alert for alert in self.alerts}
        return [
            latest[metric].as_dict()
            for metric, level in self.levels.items()
            if level != "healthy" and metric in latest
        ]

    def leak_report(self) -> dict[str, Any]:
        """Whether RSS grew steadily over the last ``leak_samples`` samples."""
        rss = [s.rss_bytes for s in list(self.history)[-self.leak_samples :] if s.rss_bytes]
        rises = sum(1 for before, after in itertools.pairwise(rss) if after > before)
        enough = len(rss) >= self.leak_samples
        return {
            "suspected": enough and rises >= 0.8 * (len(rss) - 1),
            "samples": len(rss),
            "needed": self.leak_samples,
            "rss_growth_bytes": rss[-1] - rss[0] if rss else 0,
        }

    def snapshot(self, history: int | None = None) -> dict[str, Any]:
        samples = list(self.history)
        if history is not None:
            samples = samples[-history:] if history else []
        return {
            "state": self.state,
            "pid": os.getpid(),
            "interval_seconds": self.interval,
            "level": self.level,
            "levels": dict(self.levels),
            "thresholds": dict(self.thresholds.limits),
            "active_alerts": self.active_alerts(),
            "recent_alerts": [alert.as_dict() for alert in list(self.alerts)[-20:]],
            "memory_leak": self.leak_report(),
            "sample_errors": self.errors,
            "history": [sample.as_dict() for sample in samples],
        }


def _run(monitor_ref: weakref.ref[Monitor], stop: threading.Event) -> None:
    """The monitor's thread. It holds its monitor weakly, so that an app nobody uses
    any more (in a test suite, an application factory's throwaway app) takes its
    thread with it when it is collected, instead of sampling for ever."""
    while True:
        monitor = monitor_ref()
        if monitor is None:
            return
        interval = monitor.interval
        del monitor
        if stop.wait(interval):
            return
        monitor = monitor_ref()
        if monitor is None:
            return
        monitor.tick()
        del monitor


def call_safely(
    callbacks: list[Callable[[Alert], Any]], alert: Alert, log: ExtensionLogger = logger
) -> None:
    """Call each alert callback; one that raises is logged and the rest still run."""
    for callback in callbacks:
        try:
            callback(alert)
        except Exception:
            log.exception("Alert callback %r raised", callback)
