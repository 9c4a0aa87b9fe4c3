"""Signals any part may send: this module imports nothing of the package, only blinker.

What the extension does is sent here, so that metrics, traces and the app itself
can watch it without the parts knowing who listens.

Connect a receiver as with Flask's own signals::

    from flask_resilience.signals import breaker_state_changed

    @breaker_state_changed.connect
    def page_on_call(sender, name, old, new):
        if new == "open":
            pager.notify(f"breaker {name} opened")
"""

from __future__ import annotations

from typing import Any

from blinker import Namespace

_signals = Namespace()

breaker_state_changed = _signals.signal("breaker-state-changed")
"""Sent once per transition of a circuit breaker, by the process that made it.

Keyword arguments: ``name`` (the breaker's), ``old`` and ``new`` (``"closed"``,
``"open"``, ``"half-open"``, ``"forced-open"`` or ``"forced-closed"``). The sender
is the app when the transition happens in an app context, else ``None``. With
Redis storage, the processes that only learn of another's transition send
nothing. A receiver that raises is logged and ignored: it never changes the
outcome of the call that caused the transition.
"""

call_retried = _signals.signal("call-retried")
"""Sent before ``retry_on_failure`` waits to call again: ``name`` (the function's),
``attempt`` (the call that failed, from 1) and ``wait`` (seconds)."""

retry_budget_exhausted = _signals.signal("retry-budget-exhausted")
"""Sent when ``retry_on_failure`` gives up a retry its budget has no room for: ``name``."""

bulkhead_rejected = _signals.signal("bulkhead-rejected")
"""Sent when a full bulkhead refuses a call: ``name``."""

request_shed = _signals.signal("request-shed")
"""Sent when load shedding refuses a request that queued too long: ``waited`` (seconds)."""

deadline_exceeded = _signals.signal("deadline-exceeded")
"""Sent when a request is answered 504 for its deadline: ``where`` (``"database"``,
``"outbound"``, ``"interrupted"``, or ``"request"`` for the app's own)."""

rate_limited = _signals.signal("rate-limited")
"""Sent when a request is answered 429: ``limit`` (the limit it went over)."""

dependency_unavailable = _signals.signal("dependency-unavailable")
"""Sent when a request meets a dependency that is down: ``dependency`` (``"database"``,
``"pool"`` when no connection came free, ``"breaker"`` when a breaker refused,
``"limiter storage"`` while the rate limits count in memory)."""

# The sender of each is the app when it happens in an app context, else ``None``.

__all__ = [
    "breaker_state_changed",
    "bulkhead_rejected",
    "call_retried",
    "deadline_exceeded",
    "dependency_unavailable",
    "rate_limited",
    "request_shed",
    "retry_budget_exhausted",
]


def send(signal: Any, app: Any = None, /, **data: Any) -> None:
    """Send ``signal`` with ``app`` (by default the current app) as sender, and only
    when somebody listens.

    A receiver that raises is not the caller's problem: it is left to the receiver
    (the extension's own never raise).
    """
    if signal.receivers:
        signal.send(app if app is not None else _current_app(), **data)


def _current_app() -> Any:
    from flask import current_app, has_app_context

    return current_app._get_current_object() if has_app_context() else None  # type: ignore[attr-defined]
