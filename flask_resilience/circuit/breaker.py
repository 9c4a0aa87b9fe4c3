"""One live breaker's state machine, in this process.

States: ``closed`` (calls pass and are recorded), ``open`` (calls refused until
``reset_timeout`` has passed), ``half-open`` (``half_open_calls`` trial calls
pass; all of them must succeed to close), and the two an operator sets,
``forced-open`` (every call refused) and ``forced-closed`` (every call passes,
nothing is recorded), held until :meth:`Breaker.reset`.

The closed state's path takes no lock: a call's outcome is appended to a
``deque`` bounded to the window (its ``append`` is atomic), and the window is
read whole only when a failure or a slow call might open the breaker. Clocks
are read only when they are needed: on a slow-call breaker around each call,
otherwise only while open or half-open. The lock covers transitions, failures
and half-open bookkeeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app, has_app_context
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from .. import signals
from ..errors import ProblemError
from ..log import ExtensionLogger
from ..signals import breaker_state_changed

logger = ExtensionLogger("circuit")

T = TypeVar("T")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"
FORCED_OPEN = "forced-open"
FORCED_CLOSED = "forced-closed"
STATES = (CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, FORCED_CLOSED)

# A call's outcome in the window: bit 1 failed, bit 2 slow.
_OK, _FAILED, _SLOW, _SLOW_FAILED = 0, 1, 2, 3


class CircuitOpen(ProblemError, ServiceUnavailable):
    """A circuit breaker refused the call: 503 with ``Retry-After`` in a view.

    The breaker's name is kept on the exception (``breaker``), not in the
    response: it names an internal dependency. ``state`` says why: ``"open"``,
    ``"half-open"`` (its trial calls are taken) or ``"forced-open"``.

    :param retry_after: seconds until the breaker may let a call through;
        ``retry_after`` on the exception holds them rounded up.
    """

    kind = "breaker-open"

    def __init__(self, breaker: str, retry_after: float, *, state: str = OPEN) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            f"A service this request needs is unavailable; try again in {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )
        self.breaker = breaker
        self.state = state
        self.retry_after = seconds  # Werkzeug's attribute: whole seconds
        # Made only to refuse a call, wherever the refusal is decided: counted here.
        signals.send(signals.dependency_unavailable, dependency="breaker", name=breaker)


@dataclass(frozen=True)
class Policy:
    """What a live breaker does, with the app's defaults filled in."""

    name: str
    failure_rate_threshold: float | None
    minimum_calls: int
    window_size: int
    slow_call_duration: float | None
    slow_call_rate_threshold: float
    half_open_calls: int
    fail_max: int
    reset_timeout: float

    @property
    def trial_lease(self) -> float:
        """How long a trial taken in another process may hold its place before it is
        presumed lost with that process."""
        return max(self.reset_timeout, 1.0)


@dataclass(frozen=True)
class Judge:
    """Which outcomes of a decorated function are failures.

    An HTTP error below 500 never is (``abort(404)`` is an answer the code chose),
    nor an instance of ``exclude``; then ``failure(error)`` decides, and every
    other ``Exception`` is one. A returned value is one when ``failure_result``
    says so. Everything that is not a failure counts as a success. A predicate
    that raises is logged and its outcome counts as a failure.
    """

    exclude: tuple[type[Exception], ...] = ()
    failure: Callable[[Exception], object] | None = None
    failure_result: Callable[[Any], object] | None = None

    def failed(self, error: Exception) -> bool:
        if isinstance(error, HTTPException) and (error.code or 500) < 500:
            return False
        if self.exclude and isinstance(error, self.exclude):
            return False
        return self.failure is None or _asked(self.failure, error)

    def result_failed(self, value: object) -> bool:
        return self.failure_result is not None and _asked(self.failure_result, value)


def _asked(predicate: Callable[[Any], object], value: object) -> bool:
    try:
        return bool(predicate(value))
    except Exception:
        logger.exception("A circuit breaker's failure predicate raised; counted as a failure.")
        return True


DEFAULT_JUDGE = Judge()


class Trial:
    """The admission of a half-open trial call, for the half-open period ``version``."""

    __slots__ = ("version",)

    def __init__(self, version: int) -> None:
        self.version = version


class Unrecorded:
    """The admission of a call through a forced-closed breaker: its outcome is not kept."""


UNRECORDED = Unrecorded()

Admission = Trial | Unrecorded | None
"""What :meth:`Breaker.admit` answers: ``None`` for a call in the closed state."""

Change = tuple[str, str, str]
"""A transition to announce: old state, new state, why."""


class Breaker:
    """A circuit breaker whose state lives in this process.

    :meth:`admit` before the call, then one of :meth:`succeeded` (a closed
    call's quick success), :meth:`record` or :meth:`abandon` after it;
    :meth:`call` does all three for a plain function.
    """

    storage = "memory"
    """Where the state lives now: ``"memory"``, or ``"redis"`` while shared."""

    def __init__(self, policy: Policy) -> None:
        self.name = policy.name
        self.policy = policy
        self._lock = threading.Lock()
        self._state = CLOSED
        self._window: deque[int] = deque(maxlen=policy.window_size)
        self._add = self._window.append
        self._consecutive = 0
        self._warm = False  # the window holds minimum_calls outcomes
        self._opened_at: float | None = None  # Unix time, for display and sharing
        self._retry_at = 0.0  # monotonic time of the first trial
        self._trials = 0  # half-open: trials let through
        self._trial_ok = 0  # half-open: trials that succeeded
        self._version = 0  # one more per transition

    # --- what operators see and do --------------------------------------------

    @property
    def state(self) -> str:
        """``closed``, ``open``, ``half-open``, ``forced-open`` or ``forced-closed``.

        An open breaker stays ``open`` after its ``reset_timeout`` until a call comes.
        """
        return self._state

    def force_open(self) -> None:
        """Refuse every call until :meth:`reset` (or :meth:`force_closed`)."""
        self._operate(FORCED_OPEN, "forced open by an operator")

    def force_closed(self) -> None:
        """Let every call through, recording nothing, until :meth:`reset`."""
        self._operate(FORCED_CLOSED, "forced closed by an operator")

    def reset(self) -> None:
        """Back to closed with an empty window; releases a forced state."""
        self._operate(CLOSED, "reset by an operator")

    def snapshot(self) -> dict[str, Any]:
        """The state, this process's window, and the settings in force."""
        return self._snapshot()

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``func`` through the breaker; every ``Exception`` counts as a failure
        except HTTP errors below 500."""
        admission = self.admit()
        try:
            result = func(*args, **kwargs)
        except Exception as error:
            self.record(admission, DEFAULT_JUDGE.failed(error), False)
            raise
        except BaseException:
            self.abandon(admission)
            raise
        self.record(admission, False, False)
        return result

    # --- the calls ------------------------------------------------------------

    def admit(self) -> Admission:
        """Let a call through or raise :class:`CircuitOpen`."""
        if self._state is CLOSED:
            return None
        return self._admit_other()

    def succeeded(self) -> None:
        """A call admitted as closed (``admit()`` was ``None``) succeeded in time."""
        self._add(_OK)
        self._consecutive = 0
        if not self._warm:
            self._warming()

    def record(self, admission: Admission, failed: bool, slow: bool) -> None:
        """The outcome of an admitted call."""
        if admission is None:
            if failed or slow:
                self._closed_outcome(failed, slow)
            else:
                self.succeeded()
        elif isinstance(admission, Trial):
            self._trial_outcome(admission, failed, slow)

    def abandon(self, admission: Admission) -> None:
        """The call ended without an outcome (``KeyboardInterrupt``, cancellation):
        a trial gives its place back."""
        if isinstance(admission, Trial):
            with self._lock:
                if self._is_current(admission) and self._trials > self._trial_ok:
                    self._trials -= 1

    # --- admission beyond the closed state ------------------------------------

    def _admit_other(self) -> Admission:
        state = self._state
        if state == FORCED_CLOSED:
            return UNRECORDED
        if state == FORCED_OPEN:
            raise CircuitOpen(self.name, self.policy.reset_timeout, state=FORCED_OPEN)
        if state == OPEN:
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise CircuitOpen(self.name, wait)
        elif state == CLOSED:
            return None  # closed again since the first look
        return self._take_trial()

    def _take_trial(self) -> Admission:
        change = None
        with self._lock:
            if self._state == OPEN and time.monotonic() >= self._retry_at:
                change = self._enter(HALF_OPEN, "its reset timeout passed")
            trial = self._grant_trial() if self._state == HALF_OPEN else None
        self._announce(change)
        if trial is not None:
            return trial
        return self._refused_or_admitted()

    def _grant_trial(self) -> Trial | None:
        if self._trials >= self.policy.half_open_calls:
            return None
        self._trials += 1
        return Trial(self._version)

    def _refused_or_admitted(self) -> Admission:
        """No trial was granted: refuse, or admit as the state now says."""
        state = self._state
        if state == CLOSED:
            return None
        if state == FORCED_CLOSED:
            return UNRECORDED
        if state == OPEN:
            raise CircuitOpen(self.name, max(0.0, self._retry_at - time.monotonic()))
        if state == FORCED_OPEN:
            raise CircuitOpen(self.name, self.policy.reset_timeout, state=FORCED_OPEN)
        raise CircuitOpen(self.name, 1, state=HALF_OPEN)  # its trials are taken

    # --- outcomes ---------------------------------------------------------------

    def _warming(self) -> None:
        if len(self._window) < self.policy.minimum_calls:
            return
        with self._lock:
            if self._state != CLOSED:
                return  # it finished after the breaker opened: its period is over
            self._warm = True
            change = self._trip_if_due()
        self._announce(change)

    def _closed_outcome(self, failed: bool, slow: bool) -> None:
        with self._lock:
            if self._state != CLOSED:
                return  # it finished after the breaker opened: its period is over
            self._add((_FAILED if failed else _OK) | (_SLOW if slow else _OK))
            self._consecutive = self._consecutive + 1 if failed else 0
            if not self._warm and len(self._window) >= self.policy.minimum_calls:
                self._warm = True
            change = self._trip_if_due()
        self._announce(change)

    def _trip_if_due(self) -> Change | None:
        """Open when a threshold is reached (under the lock, in the closed state)."""
        reason = self._trip_reason()
        return self._trip(reason) if reason is not None else None

    def _trip_reason(self) -> str | None:
        policy = self.policy
        if self._consecutive >= policy.fail_max:
            return f"{self._consecutive} consecutive failures"
        if not self._warm:
            return None
        window = self._window
        calls = len(window)
        threshold = policy.failure_rate_threshold
        if threshold is not None:
            failures = window.count(_FAILED) + window.count(_SLOW_FAILED)
            if failures * 100 >= threshold * calls:
                return f"{failures} of the last {calls} calls failed"
        if policy.slow_call_duration is not None:
            slow = window.count(_SLOW) + window.count(_SLOW_FAILED)
            if slow * 100 >= policy.slow_call_rate_threshold * calls:
                return (
                    f"{slow} of the last {calls} calls took longer than"
                    f" {policy.slow_call_duration:g} s"
                )
        return None

    def _trial_outcome(self, trial: Trial, failed: bool, slow: bool) -> None:
        with self._lock:
            if not self._is_current(trial):
                return  # its half-open period is over
            if failed or slow:
                what = "failed" if failed else "was slow"
                change = self._trip(f"a trial call {what}")
            else:
                change = self._trial_succeeded(trial)
        self._announce(change)

    def _is_current(self, trial: Trial) -> bool:
        return trial.version == self._version and self._state == HALF_OPEN

    # --- transitions (under the lock; the storage may override) ----------------

    def _trip(self, reason: str) -> Change | None:
        return self._enter(OPEN, reason)

    def _trial_succeeded(self, trial: Trial) -> Change | None:
        self._trial_ok += 1
        if self._trial_ok < self.policy.half_open_calls:
            return None
        return self._enter(CLOSED, f"{self._trial_ok} trial calls succeeded")

    def _operate(self, target: str, reason: str) -> None:
        with self._lock:
            change = self._enter(target, reason)
        self._announce(change)

    def _enter(self, new: str, reason: str) -> Change | None:
        old = self._state
        self._state = new
        self._version += 1
        if new == OPEN:
            self._opened_at = time.time()
            self._retry_at = time.monotonic() + self.policy.reset_timeout
        elif new == HALF_OPEN:
            self._trials = self._trial_ok = 0
        elif new == CLOSED:
            self._opened_at = None
            self._clear_window()
        return (old, new, reason) if new != old else None

    def _clear_window(self) -> None:
        self._window.clear()
        self._consecutive = 0
        self._warm = False

    def _announce(self, change: Change | None) -> None:
        """Log a transition and send :data:`~flask_resilience.signals.breaker_state_changed`
        (outside the lock: receivers may look at the breaker)."""
        if change is None:
            return
        old, new, reason = change
        log = logger.warning if new in (OPEN, FORCED_OPEN) else logger.info
        log("Circuit breaker %r: %s -> %s (%s).", self.name, old, new, reason)
        if not breaker_state_changed.receivers:
            return
        sender = current_app._get_current_object() if has_app_context() else None  # type: ignore[attr-defined]
        try:
            breaker_state_changed.send(sender, name=self.name, old=old, new=new)
        except Exception:
            logger.exception("A breaker_state_changed receiver failed; the call goes on.")

    def _snapshot(self) -> dict[str, Any]:
        policy = self.policy
        window = list(self._window)
        calls = len(window)
        failures = window.count(_FAILED) + window.count(_SLOW_FAILED)
        slow = window.count(_SLOW) + window.count(_SLOW_FAILED)
        state = self._state
        retry_after = None
        if state == OPEN:
            retry_after = round(max(0.0, self._retry_at - time.monotonic()), 3)
        return {
            "state": state,
            "storage": self.storage,
            "calls": calls,
            "failure_rate": round(100 * failures / calls, 1) if calls else None,
            "slow_call_rate": round(100 * slow / calls, 1)
            if calls and policy.slow_call_duration is not None
            else None,
            "consecutive_failures": self._consecutive,
            "opened_at": self._opened_at if state in (OPEN, HALF_OPEN) else None,
            "retry_after": retry_after,
            "failure_rate_threshold": policy.failure_rate_threshold,
            "slow_call_duration": policy.slow_call_duration,
            "slow_call_rate_threshold": policy.slow_call_rate_threshold,
            "minimum_calls": policy.minimum_calls,
            "window_size": policy.window_size,
            "fail_max": policy.fail_max,
            "reset_timeout": policy.reset_timeout,
            "half_open_calls": policy.half_open_calls,
        }
