"""What the health part's set-up, its blueprint and its monitor share: its state, and
the reads of the checks and of the other parts' providers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from flask import Flask

from ..state import HealthCheck, ResilienceState, get_state
from .checks import CheckRunner, Outcome
from .metrics import Metrics
from .monitor import Monitor, Sample, logger
from .stats import RequestLog, RequestStats
from .system import CpuMeter, current_process

PERMISSION = "resilience:health"


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
    last_sample: list[Sample] = field(default_factory=list)

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
