"""Which database failures are outages, and the answer each deserves.

An outage is a failure at the connection's level: refused, lost or reset, no
pooled connection free in time, too many connections, the server shutting down
(503, retry later), or a statement cancelled by the request deadline (504).
Everything else the database says (a missing table, bad SQL, a constraint or data
error) is a bug in the app: a 500, logged as a crash. The error handlers, the
guards and the decorators all ask here, so that they agree.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import current_app

from .errors import DatabaseUnavailable, RequestDeadlineExceeded
from .state import get_state

# SQLSTATE of a statement cancelled (PostgreSQL's statement_timeout or a cancel
# request), and the error numbers of MySQL's max_execution_time, MariaDB's
# max_statement_time and a query ended by KILL QUERY.
_QUERY_CANCELLED = "57014"
_MYSQL_TIMEOUT_ERRORS = frozenset({3024, 1969, 1317})
# PostgreSQL: connection exceptions (class 08), too many connections, and the
# server shutting down or starting up.
_PG_CONNECTION_CLASS = "08"
_PG_UNAVAILABLE = frozenset({"53300", "57P01", "57P02", "57P03"})
# MySQL and MariaDB: too many connections, server shutdown, connection killed, the
# client's "cannot connect" and "server gone" errors (CR_*, 2000-2999), and
# "disconnected for inactivity".
_MYSQL_UNAVAILABLE = frozenset({1040, 1053, 1077, 1927, 4031})
_MYSQL_CLIENT_ERRORS = range(2000, 3000)


def classify_database_error(
    error: BaseException,
) -> DatabaseUnavailable | RequestDeadlineExceeded | None:
    """The answer a database outage deserves, or ``None`` when the error is a bug."""
    if isinstance(error, sa.exc.TimeoutError):
        return _unavailable(
            "No database connection came free in time. Try again shortly.", dependency="pool"
        )
    if not isinstance(error, sa.exc.DBAPIError):
        return None
    if _was_cancelled(error.orig):
        return RequestDeadlineExceeded(
            "The request took longer than its time limit.", where="database"
        )
    if error.connection_invalidated or _is_connection_failure(error):
        return _unavailable("The database is unavailable. Try again shortly.")
    return None


def _unavailable(detail: str, dependency: str = "database") -> DatabaseUnavailable:
    retry_after = str(get_state(current_app).settings.database_retry_after)
    return DatabaseUnavailable(detail, dependency=dependency, headers={"Retry-After": retry_after})


def _is_connection_failure(error: sa.exc.DBAPIError) -> bool:
    driver_error = error.orig
    if hasattr(driver_error, "sqlstate") or hasattr(driver_error, "pgcode"):
        sqlstate = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
        if sqlstate is None:
            # The PostgreSQL drivers give every error the server sent a SQLSTATE; one
            # without is the client's own: the connection failed or broke.
            return isinstance(error, sa.exc.OperationalError)
        return str(sqlstate).startswith(_PG_CONNECTION_CLASS) or sqlstate in _PG_UNAVAILABLE
    code = _mysql_error_code(driver_error)
    return code is not None and (code in _MYSQL_UNAVAILABLE or code in _MYSQL_CLIENT_ERRORS)


def _mysql_error_code(driver_error: BaseException | None) -> int | None:
    """The error number of a MySQL or MariaDB driver's error, else ``None``.

    PyMySQL and mysqlclient put it first in ``args``; MySQL's and MariaDB's own
    connectors in ``errno``.
    """
    driver = type(driver_error).__module__.split(".")[0]
    if driver in {"mysql", "mariadb"}:
        errno = getattr(driver_error, "errno", None)
        return errno if isinstance(errno, int) else None
    if driver not in {"pymysql", "MySQLdb"}:
        return None
    args: tuple[Any, ...] = getattr(driver_error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _was_cancelled(driver_error: BaseException | None) -> bool:
    sqlstate = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    if sqlstate == _QUERY_CANCELLED:
        return True
    return _mysql_error_code(driver_error) in _MYSQL_TIMEOUT_ERRORS
