"""``@retry_on_failure``: retry a flaky call with bounded exponential backoff.

Never retried, whatever ``exceptions`` says:

* HTTP errors (Werkzeug ``HTTPException``, which includes ``CircuitOpen``,
  ``BulkheadFull`` and ``RequestDeadlineExceeded``): they are answers the code
  chose, not passing faults.
* Anything while the current app's Flask-SQLAlchemy session holds writes that
  are not committed. Running the function again would repeat them in the same
  transaction, or fail on a session that needs a rollback; the caller owns the
  transaction and must decide. Flushes are tracked with a ``Session`` event set
  up by ``init_app``, since the ORM forgets flushed objects.

A retry is not made, and the last error is raised at once, when its wait would
end after the current deadline (nothing is gained by waiting for an answer that
can no longer be used), when the server's ``Retry-After`` asks for a longer wait
than ``max_delay`` allows, or when the name's retry budget is spent
(:mod:`.budget`). A 429 or 503 answer's ``Retry-After`` (seconds or an HTTP
date, carried by a ``requests.HTTPError`` or an ``httpx.HTTPStatusError``) is the
shortest wait before the next try.

A call that succeeds costs a deposit in its budget and one ``try``: the retry
machinery starts at the first exception. It is a loop of its own rather than
tenacity's: each wait now depends on the error (``Retry-After``), the deadline
and the budget, which left tenacity only the loop, at some 20 µs a call.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import inspect
import math
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timezone
from typing import Any, ParamSpec, TypeVar, cast

import sqlalchemy as sa
from flask import Flask, current_app, has_app_context
from sqlalchemy import orm
from werkzeug.exceptions import HTTPException

from .. import signals
from ..config import DEFAULT_SETTINGS, Settings
from ..log import ExtensionLogger
from ..state import ResilienceState, current_settings, find_state, time_left
from .budget import BudgetStore, RetryBudget, RetryBudgets

P = ParamSpec("P")
R = TypeVar("R")

logger = ExtensionLogger("retry")

_FLUSHED = "flask_resilience.flushed"  # key in Session.info: writes flushed, not committed
_JITTER = 0.2  # each wait is its backoff delay times a factor in [1 - _JITTER, 1 + _JITTER]
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_SECONDS = re.compile(r"[0-9]+")


class RetryState:
    """The retry budgets of one app: per process, or shared through its Redis."""

    def __init__(self, settings: Settings) -> None:
        uri = settings.circuit_storage_uri
        self.store = BudgetStore(uri) if uri is not None and settings.retry_budget else None
        self.budgets = RetryBudgets(settings.retry_budget, settings.retry_budget_floor, self.store)


# The budgets of code that runs outside any app: this process's, at the defaults.
_UNBOUND = RetryState(DEFAULT_SETTINGS)


def init_app(app: Flask, state: ResilienceState) -> None:
    track_uncommitted_writes()
    part = state.add(RetryState(state.settings))
    if part.store is not None:
        state.add_cleanup(part.store.client.close, name="retry budget Redis")


def _budget(name: str) -> RetryBudget | None:
    state = find_state()
    part = _UNBOUND if state is None else state.find(RetryState) or _UNBOUND
    return part.budgets.get(name)


def retry_on_failure(
    max_retries: int | None = None,
    delay: float | None = None,
    backoff: float = 2.0,
    max_delay: float | None = None,
    jitter: bool = True,
    exceptions: tuple[type[Exception], ...] = (Exception,),
    *,
    name: str | None = None,
    sleep: Callable[[float], Any] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Call the function again when it raises one of ``exceptions``.

    ``max_retries=3, delay=1.0`` makes up to 4 calls, waiting about 1, 2 and 4 s
    in between. When the retries run out, the last exception is raised as it was.
    A wait is never longer than ``max_delay``, never ends after the request's
    deadline, and is at least what a 429 or 503 answer's ``Retry-After`` says
    (a longer ``Retry-After`` than ``max_delay`` ends the retries).

    :param max_retries: retries after the first call; defaults to
        ``RESILIENCE_RETRY_MAX_RETRIES``.
    :param delay: seconds before the first retry; defaults to ``RESILIENCE_RETRY_DELAY``.
    :param backoff: each wait is this many times the one before.
    :param max_delay: no wait is longer; defaults to ``RESILIENCE_RETRY_MAX_DELAY``.
    :param jitter: vary each wait by up to 20 % so that many clients that failed
        together do not retry together.
    :param exceptions: what is worth retrying (``Exception`` subclasses).
    :param name: the retry budget the calls count in (``RESILIENCE_RETRY_BUDGET``);
        by default the function's module and qualified name. Functions that call
        one service may share a name, and so its budget.
    :param sleep: the function that waits, given seconds (``time.sleep``, or
        ``asyncio.sleep`` for a coroutine function); tests pass a recorder.
    """
    _check_arguments(max_retries, delay, backoff, max_delay, exceptions)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        policy = _Policy(
            name or _default_name(func), max_retries, delay, backoff, max_delay, jitter, exceptions
        )
        if inspect.iscoroutinefunction(func):
            return cast(Callable[P, R], _retry_coroutine(func, policy, sleep))
        return _retry(func, policy, sleep)

    return decorate


def _default_name(func: Callable[..., Any]) -> str:
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    module = getattr(func, "__module__", None) or type(func).__module__
    return f"{module}.{qualname}"


def _retry(
    func: Callable[P, R], policy: _Policy, sleep: Callable[[float], Any] | None
) -> Callable[P, R]:
    name = policy.name

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        budget = _budget(name)
        if budget is not None:
            budget.deposit()
        try:
            return func(*args, **kwargs)
        except Exception as error:
            failure = error
        wait_for = time.sleep if sleep is None else sleep
        retry = 1
        while True:
            seconds = policy.next_wait(failure, retry, budget)
            if seconds is None:
                raise failure
            wait_for(seconds)
            try:
                return func(*args, **kwargs)
            except Exception as error:
                failure = error
            retry += 1

    return wrapper


def _retry_coroutine(
    func: Callable[P, Awaitable[R]], policy: _Policy, sleep: Callable[[float], Any] | None
) -> Callable[P, Awaitable[R]]:
    name = policy.name

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        budget = _budget(name)
        if budget is not None:
            budget.deposit()
        try:
            return await func(*args, **kwargs)
        except Exception as error:
            failure = error
        wait_for = asyncio.sleep if sleep is None else sleep
        retry = 1
        while True:
            seconds = policy.next_wait(failure, retry, budget)
            if seconds is None:
                raise failure
            waited = wait_for(seconds)
            if inspect.isawaitable(waited):
                await waited
            try:
                return await func(*args, **kwargs)
            except Exception as error:
                failure = error
            retry += 1

    return wrapper


@dataclass(frozen=True)
class _Policy:
    """What one decorated function's retries may do; unset bounds come from the settings."""

    name: str
    max_retries: int | None
    delay: float | None
    backoff: float
    max_delay: float | None
    jitter: bool
    exceptions: tuple[type[Exception], ...]

    def next_wait(self, error: Exception, retry: int, budget: RetryBudget | None) -> float | None:
        """Seconds to wait before retry number ``retry`` after ``error``; ``None``: no retry."""
        if not isinstance(error, self.exceptions) or isinstance(error, HTTPException):
            return None
        settings = current_settings()
        retries = settings.retry_max_retries if self.max_retries is None else self.max_retries
        if retry > retries:
            return None
        if _in_open_transaction():
            return self._refuse(error, "the database session has uncommitted writes")
        longest = settings.retry_max_delay if self.max_delay is None else self.max_delay
        first = settings.retry_delay if self.delay is None else self.delay
        seconds = self._backoff(first, longest, retry)
        asked = retry_after(error)
        if asked is not None:
            if asked > longest:
                return self._refuse(
                    error, f"the server asks to wait {asked:.0f} s, over max_delay ({longest:g} s)"
                )
            seconds = max(seconds, asked)
        left = time_left()
        if left is not None and seconds >= left:
            return self._refuse(
                error, f"a {seconds:.2f} s wait would end after the deadline ({left:.2f} s left)"
            )
        if budget is not None and not budget.try_withdraw():
            signals.send(signals.retry_budget_exhausted, name=self.name)
            return None  # the budget logs once per streak
        logger.warning(
            "%s failed (%r); retry %d of %d in %.2f s.",
            self.name,
            error,
            retry,
            retries,
            seconds,
        )
        signals.send(signals.call_retried, name=self.name, attempt=retry, wait=seconds)
        return seconds

    def _backoff(self, first: float, longest: float, retry: int) -> float:
        """``first * backoff ** (retry - 1)``, jittered, never above ``longest``."""
        try:
            seconds = first * self.backoff ** (retry - 1)
        except OverflowError:
            seconds = longest
        seconds = min(seconds, longest)
        if self.jitter:  # after the cap too, so that capped waits do not fall in step
            seconds *= random.uniform(1 - _JITTER, 1 + _JITTER)
        return float(min(seconds, longest))

    def _refuse(self, error: Exception, reason: str) -> float | None:
        """Log why ``error`` is raised without a retry; ``None``, for ``next_wait``."""
        logger.warning("Not retrying %s after %r: %s.", self.name, error, reason)
        return None


def retry_after(error: BaseException) -> float | None:
    """Seconds a 429 or 503 answer's ``Retry-After`` asks for, when ``error`` carries one
    (``requests.HTTPError``, ``httpx.HTTPStatusError``); ``None`` otherwise."""
    response = _http_response(error)
    if response is None or getattr(response, "status_code", None) not in _RETRY_AFTER_STATUSES:
        return None
    return parse_retry_after(response.headers.get("Retry-After"))


def _http_response(error: BaseException) -> Any:
    # Neither library is imported here: an error of one means it is loaded already.
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(error, requests.HTTPError):
        return error.response
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(error, httpx.HTTPStatusError):
        return error.response
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: whole seconds, or an HTTP date (0 once it
    has passed); ``None`` for anything else."""
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, by RFC 5322
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


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
