"""View decorators that make a failure an answer: ``safe_route_handler`` and ``log_errors``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

from flask import current_app, got_request_exception, has_app_context, has_request_context
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError, default_exceptions

from . import log, problems
from .outages import classify_database_error

P = ParamSpec("P")
R = TypeVar("R")
logger = log.ExtensionLogger()


def _call(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call ``func``, running it to completion if it is a coroutine function."""
    if has_app_context():
        return cast(R, current_app.ensure_sync(func)(*args, **kwargs))
    return func(*args, **kwargs)


def log_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Log any exception ``func`` raises, with the request's context, and re-raise it.

    Logged once: Flask's own record of the same exception is dropped.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return _call(func, *args, **kwargs)
        except Exception as error:
            _log_once(error)
            raise

    return wrapper


def _log_once(error: Exception) -> None:
    if has_request_context():
        log.log_error(error, _status_for(error))
    elif not getattr(error, "_resilience_logged", False):
        error._resilience_logged = True  # type: ignore[attr-defined]
        logger.error("%s failed", type(error).__name__, exc_info=error)


def _status_for(error: Exception, default: int = 500) -> int:
    if isinstance(error, HTTPException):
        return error.code or default
    answer = classify_database_error(error)
    return answer.code if answer is not None and answer.code else default


Fallback = ResponseReturnValue | Callable[[Exception], ResponseReturnValue]
# What a view returns, a coroutine function's view included: the wrapper runs it to completion.
ViewReturn = ResponseReturnValue | Awaitable[ResponseReturnValue]


@overload
def safe_route_handler(
    view: Callable[P, ViewReturn],
) -> Callable[P, ResponseReturnValue]: ...


@overload
def safe_route_handler(
    *, fallback: Fallback | None = None, status: int = 500
) -> Callable[[Callable[P, ViewReturn]], Callable[P, ResponseReturnValue]]: ...


def safe_route_handler(
    view: Callable[P, ViewReturn] | None = None,
    *,
    fallback: Fallback | None = None,
    status: int = 500,
) -> Any:
    """Answer an exception in the view with a problem response or a fallback.

    ::

        @app.get("/api/report")
        @safe_route_handler(fallback=lambda error: ({"items": [], "stale": True}, 200))
        def report(): ...

    The exception is logged once with the request's context, the database session
    is rolled back and ``got_request_exception`` is still sent, so error trackers see
    it. ``abort()`` and other HTTP errors pass through: they are answers already.
    A lost database connection is still a 503 and a cancelled statement a 504.

    :param fallback: a response (anything a view may return), or a callable taking
        the exception and returning one.
    :param status: the status of the problem response when there is no fallback.
    """
    if status not in default_exceptions or status < 400:
        raise ValueError(f"safe_route_handler status must be an HTTP error status, not {status!r}.")

    def decorate(func: Callable[P, ViewReturn]) -> Callable[P, ResponseReturnValue]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            try:
                return cast(ResponseReturnValue, _call(func, *args, **kwargs))
            except HTTPException:
                raise
            except Exception as error:
                return _answer_failure(error, fallback, status)

        return wrapper

    return decorate(view) if view is not None else decorate


def _answer_failure(
    error: Exception, fallback: Fallback | None, status: int
) -> ResponseReturnValue:
    answer: HTTPException | None = classify_database_error(error)
    if answer is None:
        answer = default_exceptions.get(status, InternalServerError)()
    log.log_error(error, answer.code or status)
    problems.count_answer(answer)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    got_request_exception.send(app, _async_wrapper=app.ensure_sync, exception=error)
    if fallback is None:
        return problems.problem_response(answer, error)
    if inspect.isfunction(fallback) or inspect.ismethod(fallback):
        return cast(Callable[[Exception], ResponseReturnValue], fallback)(error)
    return cast(ResponseReturnValue, fallback)
