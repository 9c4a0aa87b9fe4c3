"""The time an outbound call may take, and what its timeout means, for either library."""

from __future__ import annotations

from ..errors import RequestDeadlineExceeded
from ..state import current_settings, time_left

# A timeout that fires this close to the deadline, or after it, was the deadline's.
_SLACK = 0.005

NO_TIME_LEFT = "The request ran out of time before an outbound call could be made."
OUT_OF_TIME = "An outbound call did not finish before the request's deadline."


def default_timeout() -> float:
    """``RESILIENCE_OUTBOUND_TIMEOUT`` of the current app, or its default."""
    timeout: float = current_settings().outbound_timeout
    return timeout


def time_left_for_a_call() -> float | None:
    """Seconds left before the deadline, ``None`` without one.

    :raises RequestDeadlineExceeded: no time is left, so nothing is to be sent.
    """
    left = time_left()
    if left is not None and left <= 0:
        raise RequestDeadlineExceeded(NO_TIME_LEFT, where="outbound")
    return left


def narrow(seconds: float | None, default: float, left: float | None) -> float:
    """One timeout: the call's own (``default`` for ``None``), cut to the time ``left``."""
    own = default if seconds is None else seconds
    return own if left is None or own <= left else left


def deadline_fired(narrowed: bool) -> bool:
    """Whether a timeout that just fired was the deadline's: it set a bound nearer than
    the call's own, and the deadline has come."""
    if not narrowed:
        return False
    left = time_left()
    return left is not None and left <= _SLACK


def out_of_time() -> RequestDeadlineExceeded:
    return RequestDeadlineExceeded(OUT_OF_TIME, where="outbound")
