"""Request deadlines: each request's budget, and where it is enforced.

A request has ``RESILIENCE_REQUEST_TIMEOUT`` seconds from its arrival (a view may
have its own, ``@request_timeout``; a block may narrow it, ``query_timeout``).
What holds a worker for minutes is nearly always a slow statement, and databases
can cancel those: every statement is bounded by the deadline (:mod:`.statements`)
and answered 504 when cancelled. Outbound calls are bounded by the time left
(``flask_resilience.outbound``); with ``RESILIENCE_INTERRUPT_ON_DEADLINE`` the
request itself is interrupted at its deadline (:mod:`.interruption`).

Only requests that came through the app's WSGI entry have a deadline, counted
from the moment they arrived there: an app context of a command or a job, or a
``test_request_context`` a test keeps pushed, has none. A database without a
statement timeout (SQLite) is never refused work for want of time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask
from flask.globals import _cv_request
from werkzeug.exceptions import HTTPException

from ..log import ENVIRON_REQUEST_ID, ENVIRON_STARTED, ExtensionLogger
from ..state import EXTENSION_KEY, FinishHook, ResilienceState
from . import interruption, statements

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from flask.ctx import RequestContext

logger = ExtensionLogger("deadlines")
F = TypeVar("F", bound=Callable[..., Any])

# A deadline narrowed by query_timeout(); the request's own comes from its start.
_narrowed: ContextVar[float | None] = ContextVar("flask_resilience_deadline", default=None)
# The smallest budget any view was given: below it no request can have overrun.
_shortest_view_budget = math.inf
ENVIRON_DEADLINE = "flask_resilience.request_deadline"
"""The request's deadline, kept in its environ once worked out."""


def request_timeout(seconds: float | None) -> Callable[[F], F]:
    """Give one view its own time budget instead of ``RESILIENCE_REQUEST_TIMEOUT``.

    ::

        @app.post("/api/chat")
        @request_timeout(90)
        def chat(): ...

    :param seconds: the budget, counted from the start of the request; ``None``
        means no deadline for this view.
    """
    if seconds is not None and (isinstance(seconds, bool) or seconds <= 0):
        raise ValueError(f"request_timeout takes seconds > 0 or None, not {seconds!r}.")

    def mark(view: F) -> F:
        global _shortest_view_budget
        if seconds is not None:
            _shortest_view_budget = min(_shortest_view_budget, seconds)
        view._resilience_timeout = seconds  # type: ignore[attr-defined]
        return view

    return mark


@contextmanager
def query_timeout(seconds: float) -> Iterator[None]:
    """Narrow the deadline for the statements of one block.

    ::

        with query_timeout(2):
            rows = db.session.execute(expensive_report).all()

    It never extends the request's own deadline. Works outside requests too
    (commands, jobs) for transactions begun inside the block.
    """
    previous = _narrowed.get()
    narrowed = time.perf_counter() + seconds
    token = _narrowed.set(narrowed if previous is None else min(previous, narrowed))
    try:
        yield
    finally:
        _narrowed.reset(token)


def remaining_time() -> float | None:
    """Seconds left before the current deadline, or ``None`` when there is none."""
    deadline = current_deadline()
    return None if deadline is None else deadline - time.perf_counter()


def current_deadline() -> float | None:
    """The current deadline as a ``time.perf_counter()`` value, or ``None`` without one."""
    narrowed = _narrowed.get()
    context = _cv_request.get(None)  # not the proxies: outbound calls ask on every call
    for_request = None if context is None else _request_deadline(context)
    if narrowed is None or for_request is None:
        return narrowed if for_request is None else for_request
    return min(narrowed, for_request)


_NO_DEADLINE = -math.inf  # cached for a request that has none


def _request_deadline(context: RequestContext) -> float | None:
    """The request's arrival plus its view's budget, or the app's; ``None`` for a
    request context that did not come through the app's WSGI entry.

    Worked out once per request (its view is matched when its context is pushed)
    and kept in its environ.
    """
    environ = context.request.environ
    deadline: float | None = environ.get(ENVIRON_DEADLINE)
    if deadline is None:
        deadline = _work_out_deadline(context)
        environ[ENVIRON_DEADLINE] = _NO_DEADLINE if deadline is None else deadline
    return None if deadline == _NO_DEADLINE else deadline


def _work_out_deadline(context: RequestContext) -> float | None:
    started: float | None = context.request.environ.get(ENVIRON_STARTED)
    state = context.app.extensions.get(EXTENSION_KEY)
    # Or another app of the process, without the extension.
    if started is None or not isinstance(state, ResilienceState):
        return None
    view = context.app.view_functions.get(context.request.endpoint or "")
    default = state.settings.request_timeout
    budget: float | None = getattr(view, "_resilience_timeout", default)
    return None if budget is None else started + budget


def init_app(app: Flask, state: ResilienceState) -> None:
    if state.db is not None:
        # Worked out when a statement starts, not in a hook run on every request:
        # most requests of most apps never need it.
        statements.enforce(current_deadline)
    default = state.settings.request_timeout
    state.finish_hooks.append(overrun_logger(app, default))
    if state.settings.interrupt_on_deadline:
        state.path.add_layer(
            "deadline",
            interruption.interrupting_layer(
                app, lambda environ: _view_budget(app, environ, default)
            ),
        )


def overrun_logger(app: Flask, default: float | None) -> FinishHook:
    """Log the requests of ``app`` that finished after their deadline.

    Called by the request middleware with the time each request took, once the
    request's context is gone; the view's own budget is looked up only for a
    request slower than every budget could be.
    """
    log = logger.bound_to(app)

    def note_overrun(environ: WSGIEnvironment, elapsed: float) -> None:
        if elapsed < min(default or math.inf, _shortest_view_budget):
            return
        if environ.get(interruption.INTERRUPTED):
            return  # logged as an interruption already
        budget = _view_budget(app, environ, default)
        if budget is not None and elapsed > budget:
            log.warning(
                "%s %s finished %.1f s after its deadline [request_id=%s]",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                elapsed - budget,
                environ.get(ENVIRON_REQUEST_ID),
            )

    return note_overrun


def _view_budget(
    app: Flask, environ: WSGIEnvironment, default: float | None = None
) -> float | None:
    try:
        endpoint, _ = app.url_map.bind_to_environ(environ).match()
    except HTTPException:
        return default
    view = app.view_functions.get(str(endpoint))
    budget: float | None = getattr(view, "_resilience_timeout", default)
    return budget
