"""``@retry_on_failure``: retry a flaky call with bounded exponential backoff, over tenacity.

Two things are never retried, whatever ``exceptions`` says:

* HTTP errors (Werkzeug ``HTTPException``, which includes ``CircuitOpen`` and
  ``BulkheadFull``): they are answers the code chose, not passing faults.
* Anything while the current app's Flask-SQLAlchemy session holds writes that
  are not committed. Running the function again would repeat them in the same
  transaction, or fail on a session that needs a rollback; the caller owns the
  transaction and must decide. Flushes are tracked with a ``Session`` event set
  up by ``init_app``, since the ORM forgets flushed objects.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

import sqlalchemy as sa
import tenacity
from flask import current_app, has_app_context
from sqlalchemy import orm
from werkzeug.exceptions import HTTPException

from .log import ExtensionLogger
from .state import current_settings

P = ParamSpec("P")
R = TypeVar("R")

logger = ExtensionLogger("retry")

_FLUSHED = "flask_resilience.flushed"  # key in Session.info: writes flushed, not committed
_JITTER = 0.2  # each wait is its backoff delay times a factor in [1 - _JITTER, 1 + _JITTER]


class _Wait(tenacity.wait.wait_base):
    """``delay * backoff ** (retry - 1)``, jittered, never above ``max_delay``."""

    def __init__(self, delay: float, backoff: float, max_delay: float, jitter: bool) -> None:
        self.delay = delay
        self.backoff = backoff
        self.max_delay = max_delay
        self.jitter = jitter

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        retry = retry_state.attempt_number  # the attempt that just failed
        try:
            seconds = self.delay * self.backoff ** (retry - 1)
        except OverflowError:
            seconds = self.max_delay
        seconds = min(seconds, self.max_delay)
        if self.jitter:  # after the cap too, so that capped waits do not fall in step
            seconds *= random.uniform(1 - _JITTER, 1 + _JITTER)
        return float(min(seconds, self.max_delay))


def retry_on_failure(
    max_retries: int | None = None,
    delay: float | None = None,
    backoff: float = 2.0,
    max_delay: float | None = None,
    jitter: bool = True,
    exceptions: tuple[type[Exception], ...] = (Exception,),
    *,
    sleep: Callable[[float], Any] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Call the function again when it raises one of ``exceptions``.

    ``max_retries=3, delay=1.0`` makes up to 4 calls, waiting about 1, 2 and 4 s
    in between. When the retries run out, the last exception is raised as it was.

    :param max_retries: retries after the first call; defaults to
        ``RESILIENCE_RETRY_MAX_RETRIES``.
    :param delay: seconds before the first retry; defaults to ``RESILIENCE_RETRY_DELAY``.
    :param backoff: each wait is this many times the one before.
    :param max_delay: no wait is longer; defaults to ``RESILIENCE_RETRY_MAX_DELAY``.
    :param jitter: vary each wait by up to 20 % so that many clients that failed
        together do not retry together.
    :param exceptions: what is worth retrying (``Exception`` subclasses).
    :param sleep: the function that waits, given seconds (``time.sleep``, or
        ``asyncio.sleep`` for a coroutine function); tests pass a recorder.
    """
    _check_arguments(max_retries, delay, backoff, max_delay, exceptions)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        built: dict[tuple[int, float, float], dict[str, Any]] = {}  # per configuration in use

        def options() -> dict[str, Any]:
            retries = max_retries
            if retries is None:
                retries = current_settings().retry_max_retries
            first = delay if delay is not None else current_settings().retry_delay
            longest = max_delay if max_delay is not None else current_settings().retry_max_delay
            key = (retries, first, longest)
            found = built.get(key)
            if found is None:
                found = built[key] = _options(func, *key, backoff, jitter, exceptions)
            return found

        if inspect.iscoroutinefunction(func):
            return cast(Callable[P, R], _retry_coroutine(func, options, sleep))
        return _retry(func, options, sleep)

    return decorate


def _retry(
    func: Callable[P, R],
    options: Callable[[], dict[str, Any]],
    sleep: Callable[[float], Any] | None,
) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        retrying = tenacity.Retrying(**options(), sleep=time.sleep if sleep is None else sleep)
        return retrying(func, *args, **kwargs)

    return wrapper


def _retry_coroutine(
    func: Callable[P, Awaitable[R]],
    options: Callable[[], dict[str, Any]],
    sleep: Callable[[float], Any] | None,
) -> Callable[P, Awaitable[R]]:
    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        retrying = tenacity.AsyncRetrying(
            **options(), sleep=asyncio.sleep if sleep is None else sleep
        )
        return await retrying(func, *args, **kwargs)

    return wrapper


def _options(
    func: Callable[..., Any],
    retries: int,
    first: float,
    longest: float,
    backoff: float,
    jitter: bool,
    exceptions: tuple[type[Exception], ...],
) -> dict[str, Any]:
    """tenacity's arguments; its strategies keep no state, so calls can share them."""
    name = getattr(func, "__qualname__", type(func).__qualname__)

    def worth_retrying(error: BaseException) -> bool:
        if not isinstance(error, exceptions) or isinstance(error, HTTPException):
            return False
        if _in_open_transaction():
            logger.warning(
                "Not retrying %s after %r: the database session has uncommitted writes.",
                name,
                error,
            )
            return False
        return True

    def log_retry(retry_state: tenacity.RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        # next_action rather than upcoming_sleep, which tenacity only has from 8.3.
        seconds = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "%s failed (%r); retry %d of %d in %.2f s.",
            name,
            error,
            retry_state.attempt_number,
            retries,
            seconds,
        )

    return {
        "stop": tenacity.stop_after_attempt(retries + 1),
        "wait": _Wait(first, backoff, longest, jitter),
        "retry": tenacity.retry_if_exception(worth_retrying),
        "before_sleep": log_retry,
        "reraise": True,
    }


def _in_open_transaction() -> bool:
    """Whether the current app's Flask-SQLAlchemy session holds uncommitted writes."""
    if not has_app_context():
        return False
    db = current_app.extensions.get("sqlalchemy")
    if db is None or not db.session.registry.has():
        return False  # no session was opened in this context
    session: orm.Session = db.session()
    if not session.in_transaction():
        return False
    return bool(session.new or session.dirty or session.deleted or session.info.get(_FLUSHED))


def _note_flush(session: orm.Session, _context: Any) -> None:
    session.info[_FLUSHED] = True


def _forget_flush(session: orm.Session, transaction: orm.SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended: committed or rolled back
        session.info.pop(_FLUSHED, None)


def track_uncommitted_writes() -> None:
    """Track flushes on every ORM session, once per process (see the module's docstring)."""
    if not sa.event.contains(orm.Session, "after_flush", _note_flush):
        sa.event.listen(orm.Session, "after_flush", _note_flush)
        sa.event.listen(orm.Session, "after_transaction_end", _forget_flush)


def _check_arguments(
    max_retries: int | None,
    delay: float | None,
    backoff: float,
    max_delay: float | None,
    exceptions: tuple[type[Exception], ...],
) -> None:
    def number(name: str, value: Any, minimum: float, integer: bool = False) -> None:
        kinds = (int,) if integer else (int, float)
        if value is None:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, kinds)
            or not minimum <= value < math.inf
        ):
            kind = "a whole number" if integer else "a number"
            raise ValueError(f"{name} is {value!r}; expected {kind} >= {minimum:g}.")

    number("max_retries", max_retries, 0, integer=True)
    number("delay", delay, 0)
    number("backoff", backoff, 1)
    number("max_delay", max_delay, 0)
    if not isinstance(exceptions, tuple) or not exceptions:
        raise TypeError(f"exceptions is {exceptions!r}; expected a tuple of Exception subclasses.")
    for item in exceptions:
        if not (isinstance(item, type) and issubclass(item, Exception)):
            raise TypeError(
                f"exceptions holds {item!r}; expected Exception subclasses"
                " (KeyboardInterrupt and SystemExit are never retried)."
            )
