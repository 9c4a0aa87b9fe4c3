"""Health checks: the registry's entries, what a check may return, and the runner.

The runner starts every check that has no fresh result in its own thread, all at
once, and waits for each until that run's deadline (its start plus its timeout).
A check whose earlier run is still going is joined, never started again, so a
dependency that hangs costs one stuck thread, not one per probe. Results are kept
per process for a TTL that is shorter after a failure, and everybody asking while
a check runs shares that run (single flight).
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..log import ExtensionLogger, first_line
from ..state import HealthCheck

logger = ExtensionLogger("health")

STATUSES = ("pass", "warn", "fail")
_RANK = {status: rank for rank, status in enumerate(STATUSES)}

# scheme://user:password@ -> scheme://user:***@ ; any "password=..." pair too.
_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s]*@")
_KEY_VALUE_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|token|secret)=\S+")
_OUTPUT_LIMIT = 300


@dataclass(frozen=True)
class HealthResult:
    """What a check may return when pass or fail is not enough.

    ::

        @resilience.health_check("queue")
        def queue_depth():
            depth = queue.depth()
            status = "warn" if depth > 1000 else "pass"
            return HealthResult(status, observed_value=depth, observed_unit="jobs")

    :param status: ``"pass"``, ``"warn"`` or ``"fail"``.
    :param observed_value: the measured value, shown as ``observedValue``.
    :param observed_unit: its unit, shown as ``observedUnit``.
    :param output: a short explanation, shown in detailed health only.
    """

    status: str = "pass"
    observed_value: Any = None
    observed_unit: str | None = None
    output: str | None = None


@dataclass(frozen=True)
class Outcome:
    """One finished (or abandoned) run of a check."""

    name: str
    status: str
    critical: bool
    duration: float
    time: str
    observed_value: Any = None
    observed_unit: str | None = None
    output: str | None = None
    component_type: str = "component"
    component_id: str | None = None

    def summary(self) -> dict[str, Any]:
        """The entry of the public answers: what failed and what it is, never an output.

        An output may name a host or quote a driver's message; the public answers
        only say which component it is (``componentType``, ``componentId``).
        """
        entry: dict[str, Any] = {"status": self.status, "componentType": self.component_type}
        if self.component_id is not None:
            entry["componentId"] = self.component_id
        if self.observed_value is not None:
            entry["observedValue"] = self.observed_value
        if self.observed_unit is not None:
            entry["observedUnit"] = self.observed_unit
        entry["time"] = self.time
        return entry

    def detail(self) -> dict[str, Any]:
        """The entry of detailed health: the output too, on ``warn`` and ``fail`` only."""
        entry = self.summary()
        entry.update(critical=self.critical, duration_ms=round(self.duration * 1000, 3))
        if self.output is not None and self.status != "pass":
            entry["output"] = self.output
        return entry


def scrub(text: str) -> str:
    """Hide credentials a message may carry and keep it short."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _KEY_VALUE_SECRET.sub(r"\1=***", text)
    return text if len(text) <= _OUTPUT_LIMIT else text[: _OUTPUT_LIMIT - 3] + "..."


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=_RANK.__getitem__, default="pass")


def iso_time(seconds: float | None = None) -> str:
    """A Unix time (now by default) in ISO 8601, UTC, to the millisecond: what the draft uses."""
    moment = (
        datetime.now(timezone.utc)
        if seconds is None
        else datetime.fromtimestamp(seconds, timezone.utc)
    )
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def outcome_of(
    check: HealthCheck, status: str, duration: float, output: str | None = None, **observed: Any
) -> Outcome:
    """An outcome of ``check`` finished now."""
    return Outcome(
        check.name,
        status,
        check.critical,
        duration,
        iso_time(),
        output=output,
        component_type=check.component_type,
        component_id=check.component_id,
        **observed,
    )


def interpret(check: HealthCheck, raw: Any, duration: float) -> Outcome:
    """Turn what a check returned into an outcome."""
    value: Any = None
    unit: str | None = None
    output: str | None = None
    if raw is None or raw is True:
        status = "pass"
    elif raw is False:
        status = "fail"
    elif isinstance(raw, str) and raw in _RANK:
        status = raw
    elif isinstance(raw, HealthResult) and raw.status in _RANK:
        status, value, unit = raw.status, raw.observed_value, raw.observed_unit
        output = scrub(str(raw.output)) if raw.output is not None else None
    else:
        status, output = "fail", f"the check returned {type(raw).__name__}, not a status"
    return outcome_of(check, status, duration, output, observed_value=value, observed_unit=unit)


@dataclass
class _Run:
    check: HealthCheck
    started: float
    timeout: float
    future: concurrent.futures.Future[Outcome] = field(default_factory=concurrent.futures.Future)


class CheckRunner:
    """Runs checks in parallel, bounded, cached and single-flight, for one app.

    :param timeout: seconds a check without its own timeout may take.
    :param ttl: seconds a passing or warning result is reused.
    :param ttl_failed: seconds a failed result is reused.
    """

    def __init__(self, *, timeout: float, ttl: float, ttl_failed: float) -> None:
        self.timeout = timeout
        self.ttl = ttl
        self.ttl_failed = ttl_failed
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Outcome]] = {}
        self._running: dict[str, _Run] = {}
        # Checks whose last run raised: the next raise is not news (see _log_raised).
        self._raising: set[str] = set()

    def running(self) -> list[str]:
        """Names of the checks whose run has not finished (hung ones among them)."""
        with self._lock:
            return sorted(self._running)

    def run(
        self,
        checks: Iterable[HealthCheck],
        context: Callable[[], AbstractContextManager[Any]],
    ) -> dict[str, Outcome]:
        """The outcome of each check, fresh from the cache or run now.

        :param context: enters what a check needs (the app context) in its thread.
        """
        results: dict[str, Outcome] = {}
        waiting: list[_Run] = []
        starting: list[_Run] = []
        now = time.monotonic()
        with self._lock:
            for check in checks:
                cached = self._cache.get(check.name)
                if cached is not None and cached[0] > now:
                    results[check.name] = cached[1]
                    continue
                run = self._running.get(check.name)
                if run is None:
                    timeout = check.timeout if check.timeout is not None else self.timeout
                    run = _Run(check, now, timeout)
                    self._running[check.name] = run
                    starting.append(run)
                waiting.append(run)
        for run in starting:
            thread = threading.Thread(
                target=self._execute,
                args=(run, context),
                name=f"health-check:{run.check.name}",
                daemon=True,
            )
            thread.start()
        for run in waiting:
            results[run.check.name] = self._wait(run)
        return results

    def _wait(self, run: _Run) -> Outcome:
        remaining = run.started + run.timeout - time.monotonic()
        try:
            return run.future.result(timeout=max(0.0, remaining))
        except concurrent.futures.TimeoutError:
            outcome = self._timed_out(run, time.monotonic() - run.started)
            with self._lock:
                if self._running.get(run.check.name) is run:  # no real result came meanwhile
                    self._cache[run.check.name] = (self._expiry(outcome), outcome)
            return outcome

    @staticmethod
    def _timed_out(run: _Run, duration: float) -> Outcome:
        return outcome_of(run.check, "fail", duration, "timed out")

    def _execute(self, run: _Run, context: Callable[[], AbstractContextManager[Any]]) -> None:
        check = run.check
        started = time.perf_counter()
        try:
            with context():
                raw = check.func()
            duration = time.perf_counter() - started
            outcome = interpret(check, raw, duration)
            self._raising.discard(check.name)
        except Exception as error:
            duration = time.perf_counter() - started
            self._log_raised(check.name, error)
            outcome = outcome_of(
                check, "fail", duration, f"the check raised {type(error).__name__}"
            )
        if time.monotonic() - run.started > run.timeout:  # whoever waited has given up
            outcome = self._timed_out(run, duration)
        with self._lock:
            self._running.pop(check.name, None)
            self._cache[check.name] = (self._expiry(outcome), outcome)
        run.future.set_result(outcome)

    def _log_raised(self, name: str, error: Exception) -> None:
        """A warning with the traceback when a check starts raising; one line after that.

        While a database is down its check raises on every run, for every worker;
        one traceback per outage tells what happened, the rest would bury it.
        """
        if name in self._raising:
            logger.info(
                "Health check %r still raises %s: %s",
                name,
                type(error).__name__,
                scrub(first_line(error)),
            )
            return
        self._raising.add(name)
        logger.warning("Health check %r raised", name, exc_info=True)

    def _expiry(self, outcome: Outcome) -> float:
        ttl = self.ttl_failed if outcome.status == "fail" else self.ttl
        return time.monotonic() + ttl

    def clear(self) -> None:
        """Forget every cached result (runs in progress go on)."""
        with self._lock:
            self._cache.clear()
