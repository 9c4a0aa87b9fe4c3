"""What the health part's set-up, its blueprint and its monitor share: its state, and
the reads of the checks and of the other parts' providers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil
from flask import Flask

from ..log import ExtensionLogger
from ..state import HealthCheck, ResilienceState, get_state
from .checks import CheckRunner, Outcome, iso_time, scrub
from .metrics import Metrics
from .monitor import Monitor, Sample, logger
from .stats import RequestLog, RequestStats
from .system import CpuMeter, current_process
from .workers import WorkerSnapshots

PERMISSION = "resilience:health"


@dataclass(frozen=True)
class Availability:
    """What the app says of itself, in this process (Spring Boot's availability states).

    ``refusing`` fails readiness: the process lives but must get no traffic (a
    cache warming, a maintenance step). ``broken`` fails liveness and startup: the
    process cannot recover by itself and the orchestrator should restart it. Each
    holds the reason, shown on the public answer it fails, or ``None``.
    """

    refusing: str | None = None
    refusing_since: str | None = None
    broken: str | None = None
    broken_since: str | None = None

    @property
    def readiness(self) -> str:
        return "accepting" if self.refusing is None else "refusing"

    @property
    def liveness(self) -> str:
        return "correct" if self.broken is None else "broken"

    def as_dict(self) -> dict[str, Any]:
        return {
            "liveness": self.liveness,
            "broken": self.broken,
            "broken_since": self.broken_since,
            "readiness": self.readiness,
            "refusing": self.refusing,
            "refusing_since": self.refusing_since,
        }


REASON_LIMIT = 200


def reason_text(reason: object) -> str:
    """A reason the app gives, fit for a public answer: one line, short, no credentials."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"reason is {reason!r}; expected a non-empty str saying why.")
    text = scrub(" ".join(reason.split()))
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 3] + "..."


@dataclass
class HealthState:
    """The health part's share of the app's state."""

    runner: CheckRunner
    builtin_checks: list[HealthCheck]
    stats: RequestStats
    requests: RequestLog
    monitor: Monitor
    metrics: Metrics
    cpu: CpuMeter  # the monitor's: nothing else reads it, so its baseline is its own
    request_cpu: CpuMeter  # for requests when the monitor has no recent sample
    process: psutil.Process
    disk_path: str
    workers: WorkerSnapshots
    log: ExtensionLogger = logger
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    last_sample: list[Sample] = field(default_factory=list)
    # Set when init_app has finished, the startup checks included: the startup probe passes.
    started_at: str | None = None
    startup_seconds: float | None = None
    availability: Availability = field(default_factory=Availability)
    # The liveness layer answers from these bytes: built when the state changes, not per probe.
    broken_body: bytes | None = None
    _unknown_warned: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def finish_startup(self, seconds: float) -> None:
        self.startup_seconds = round(seconds, 3)
        self.started_at = iso_time()

    def refuse_traffic(self, reason: object) -> None:
        text = reason_text(reason)
        with self._lock:
            now = self.availability
            since = now.refusing_since if now.refusing is not None else iso_time()
            self.availability = Availability(text, since, now.broken, now.broken_since)
        self.log.warning("Refusing traffic: %s; readiness answers 503", text)

    def accept_traffic(self) -> None:
        with self._lock:
            now = self.availability
            if now.refusing is None:
                return
            self.availability = Availability(None, None, now.broken, now.broken_since)
        self.log.info("Accepting traffic again")

    def mark_broken(self, reason: object) -> None:
        text = reason_text(reason)
        with self._lock:
            now = self.availability
            since = now.broken_since if now.broken is not None else iso_time()
            self.availability = Availability(now.refusing, now.refusing_since, text, since)
            self.broken_body = json.dumps({"status": "fail", "output": f"broken: {text}"}).encode()
        self.log.error("Marked broken: %s; liveness answers 503", text)

    def mark_correct(self) -> None:
        with self._lock:
            now = self.availability
            if now.broken is None:
                return
            self.availability = Availability(now.refusing, now.refusing_since, None, None)
            self.broken_body = None
        self.log.info("No longer marked broken; liveness answers 200 again")

    def warn_unknown_once(self, group: str, names: list[str]) -> None:
        """Log a group's members that are not registered checks, once per name."""
        with self._lock:
            new = [name for name in names if (group, name) not in self._unknown_warned]
            self._unknown_warned.update((group, name) for name in new)
        if new:
            self.log.warning(
                "Health group %r lists %s, not a registered check: the group fails until"
                " it is registered",
                group,
                ", ".join(repr(name) for name in new),
            )

    def reset_after_fork(self) -> None:
        """A worker forked from a parent that had already measured starts afresh."""
        self.process = current_process()
        self.cpu = CpuMeter()
        self.request_cpu = CpuMeter()
        self.last_sample.clear()

    def cpu_now(self) -> tuple[float | None, float | None]:
        """(host CPU %, process CPU %): the monitor's latest reading while it is
        fresh, else from a meter of the requests' own, never moving the monitor's."""
        monitor = self.monitor
        if self.last_sample and time.time() - self.last_sample[0].time < 2 * monitor.interval:
            sample = self.last_sample[0]
            return sample.cpu_usage, sample.process_cpu
        return self.request_cpu.read()


LIVE_BODY = b'{"status": "pass"}'


def pools(state: ResilienceState) -> dict[str, dict[str, Any]]:
    """Pool status of each engine without its URL (``default`` for the default bind)."""
    return provided(state, "pools") or {}


def provided(state: ResilienceState, name: str) -> Any:
    """What another part's detail provider says, ``None`` without one or when it fails."""
    provider: Callable[[], Any] | None = state.detail_providers.get(name)
    if provider is None:
        return None
    try:
        return provider()
    except Exception:
        logger.warning("The %r detail provider raised", name, exc_info=True)
        return {"error": "unavailable"}


def all_checks(state: ResilienceState) -> list[HealthCheck]:
    return [
        *state.get(HealthState).builtin_checks,
        *state.health_checks.values(),
        *state.shared_health_checks.values(),
    ]


def run_checks(
    app: Flask, state: ResilienceState, *, critical_only: bool = False
) -> dict[str, Outcome]:
    checks = [c for c in all_checks(state) if c.critical or not critical_only]
    return state.get(HealthState).runner.run(checks, app.app_context)


def health_state(app: Flask | None = None) -> HealthState:
    """The health part's state of ``app`` (the current app by default)."""
    try:
        return get_state(app).get(HealthState)
    except LookupError:
        raise RuntimeError(
            "Health is off for this app: RESILIENCE_HEALTH_ENABLED is False."
        ) from None
