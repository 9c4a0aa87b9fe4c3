"""Every statement of a request within its deadline, on PostgreSQL, MySQL and MariaDB.

A statement timeout set once per transaction gives each statement the whole time
left: three slow statements could each take nearly all of it. Instead each
statement, when it starts, arms the process's :mod:`~.watch` with the current
deadline (the request's, or a ``query_timeout`` block's), and disarms it when it
ends. A statement still running at the deadline is cancelled by the server
(PostgreSQL's cancel request; ``KILL QUERY`` on MySQL and MariaDB, from a
connection of its own), and a statement that would start after the deadline is
refused before it is sent. Either way the request is answered 504 and the
connection, its transaction rolled back, goes back to the pool fit for the next.

No round trip is added: arming costs a lock and a heap push per statement. SQLite
has nothing to cancel a statement with; it is never refused work.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from ..errors import RequestDeadlineExceeded
from ..log import ExtensionLogger
from .watch import watch

logger = ExtensionLogger("deadlines")

TIMED_DIALECTS = frozenset({"postgresql", "mysql", "mariadb"})
_ARMED = "flask_resilience.deadline"
_CANCELLED = "flask_resilience.cancelled"
_listening = False
_listen_lock = threading.Lock()
# One small engine per database to send KILL QUERY from, made on first need. Its
# connection is kept: connecting anew at each deadline would add a login to every
# cancellation, a few hundred milliseconds on a loaded server.
_killers: dict[str, Engine] = {}


def _forget_killers_after_fork() -> None:
    # The parent's killer connections are not the child's to close or use.
    for engine in _killers.values():
        engine.dispose(close=False)
    _killers.clear()


os.register_at_fork(after_in_child=_forget_killers_after_fork)


def enforce(current_deadline: Callable[[], float | None]) -> None:
    """Check every statement of every engine of the process against ``current_deadline``.

    Listened to on SQLAlchemy's ``Engine`` class, once: Flask-SQLAlchemy may build
    its engines after ``init_app``, or again. The check is one call when there is
    no deadline (a command, another app of the process).
    """
    global _listening
    with _listen_lock:
        if _listening:
            return
        _listening = True

    def before_statement(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if conn.dialect.name not in TIMED_DIALECTS:
            return
        deadline = current_deadline()
        if deadline is None:
            return
        if deadline <= time.perf_counter():
            raise RequestDeadlineExceeded(
                "The request took longer than its time limit.", where="database"
            )
        conn.info.pop(_CANCELLED, None)
        conn.info[_ARMED] = watch.arm(deadline, _canceller(conn))

    def statement_ended(conn: Connection, *_: Any) -> None:
        disarm(conn)
        # MySQL's SLEEP() and a few others end early and quietly when killed: the
        # statement was still cut short, and the request has no time left.
        if conn.info.pop(_CANCELLED, False):
            raise RequestDeadlineExceeded(
                "The request took longer than its time limit.", where="database"
            )

    def statement_failed(context: sa.engine.ExceptionContext) -> None:
        if context.connection is not None:
            disarm(context.connection)
            context.connection.info.pop(_CANCELLED, None)

    event.listen(Engine, "before_cursor_execute", before_statement)
    event.listen(Engine, "after_cursor_execute", statement_ended)
    event.listen(Engine, "handle_error", statement_failed)


def disarm(conn: Connection) -> None:
    token = conn.info.pop(_ARMED, None)
    if token is not None:
        watch.disarm(token)


def _canceller(conn: Connection) -> Callable[[], None]:
    """How to cancel what ``conn`` is running, from the watch's thread."""
    dbapi_connection: Any = conn.connection.dbapi_connection
    info = conn.info
    if conn.dialect.name == "postgresql":

        def cancel() -> None:
            info[_CANCELLED] = True
            dbapi_connection.cancel()

        return cancel
    thread_id = int(dbapi_connection.thread_id())
    url = conn.engine.url

    def kill_query() -> None:
        info[_CANCELLED] = True
        with _killer(url).connect() as killer:
            killer.exec_driver_sql(f"KILL QUERY {thread_id}")

    return kill_query


def _killer(url: sa.engine.URL) -> Engine:
    key = url.render_as_string(hide_password=False)
    engine = _killers.get(key)
    if engine is None:
        engine = _killers[key] = sa.create_engine(
            url, pool_size=1, max_overflow=4, pool_pre_ping=True, pool_recycle=3600
        )
    return engine
