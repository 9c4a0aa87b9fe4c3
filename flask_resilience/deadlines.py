"""Request deadlines, enforced where the time goes: in the database.

Python cannot stop a thread, so a deadline cannot interrupt arbitrary code. What
holds a worker for minutes is nearly always a slow statement, and databases can
cancel those: every transaction begun during a request is given the time left
(PostgreSQL ``SET LOCAL statement_timeout``, MySQL ``max_execution_time``,
MariaDB ``max_statement_time``). A cancelled statement is answered 504.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, Response, current_app, request
from sqlalchemy import event
from sqlalchemy.engine import Connection

from .errors import RequestDeadlineExceeded
from .log import request_state

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

logger = logging.getLogger("flask_resilience")
F = TypeVar("F", bound=Callable[..., Any])

_deadline: ContextVar[float | None] = ContextVar("flask_resilience_deadline", default=None)
_TIMEOUT_SET = "flask_resilience_timeout_set"


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
    previous = _deadline.get()
    narrowed = time.perf_counter() + seconds
    token = _deadline.set(narrowed if previous is None else min(previous, narrowed))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining_time() -> float | None:
    """Seconds left before the current deadline, or ``None`` when there is none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.perf_counter()


def init_app(app: Flask, db: SQLAlchemy | None) -> None:
    app.before_request(_start_deadline)
    app.after_request(_note_slow_request)
    app.teardown_request(_clear_deadline)
    if db is not None and not event.contains(db.session, "after_begin", _limit_transaction):
        event.listen(db.session, "after_begin", _limit_transaction)


def _start_deadline() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    budget = getattr(view, "_resilience_timeout", _configured_timeout())
    if budget is not None:
        _deadline.set(request_state().started + budget)
        request_state().deadline = request_state().started + budget


def _configured_timeout() -> float | None:
    timeout: float | None = current_app.extensions["resilience"].config[
        "RESILIENCE_REQUEST_TIMEOUT"
    ]
    return timeout


def _note_slow_request(response: Response) -> Response:
    deadline = request_state().deadline
    if deadline is not None and time.perf_counter() > deadline:
        current_app.extensions["resilience"].count_slow_request()
        logger.warning(
            "%s %s finished after its deadline (%.1f s over)",
            request.method,
            request.path,
            time.perf_counter() - deadline,
        )
    return response


def _clear_deadline(_error: BaseException | None) -> None:
    _deadline.set(None)


def _limit_transaction(_session: Any, _transaction: Any, connection: Connection) -> None:
    """Give a transaction that just began the time left, or refuse it if none is."""
    remaining = remaining_time()
    dialect = connection.dialect
    if remaining is None:
        if connection.info.pop(_TIMEOUT_SET, False):  # MySQL keeps it per connection
            _set_mysql_timeout(connection, 0)
        return
    if remaining <= 0:
        raise RequestDeadlineExceeded("The request took longer than its time limit.")
    milliseconds = max(1, int(remaining * 1000))
    if dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")
    elif dialect.name in {"mysql", "mariadb"}:
        _set_mysql_timeout(connection, milliseconds)
        connection.info[_TIMEOUT_SET] = True


def _set_mysql_timeout(connection: Connection, milliseconds: int) -> None:
    if getattr(connection.dialect, "is_mariadb", False):
        connection.exec_driver_sql(f"SET SESSION max_statement_time = {milliseconds / 1000:.3f}")
    else:
        connection.exec_driver_sql(f"SET SESSION max_execution_time = {milliseconds}")
