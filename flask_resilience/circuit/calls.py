"""``@circuit_breaker``: the decorator, and the guards it wraps functions in."""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from flask import has_request_context, request

from .breaker import Admission, Breaker, CircuitOpen, Judge
from .registry import Definition, define, get_breaker

P = ParamSpec("P")
R = TypeVar("R")


def circuit_breaker(
    name: str,
    *,
    failure_rate_threshold: float | None = 50,
    minimum_calls: int = 10,
    window_size: int = 20,
    slow_call_duration: float | None = None,
    slow_call_rate_threshold: float = 100,
    half_open_calls: int = 1,
    fail_max: int | None = None,
    reset_timeout: float | None = None,
    failure: Callable[[Exception], object] | None = None,
    failure_result: Callable[[Any], object] | None = None,
    fallback: Callable[..., Any] | None = None,
    exclude: tuple[type[Exception], ...] = (),
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Guard a function with the circuit breaker called ``name``.

    Closed, the breaker records each call's outcome in a window of the last
    ``window_size`` calls. It opens when, with at least ``minimum_calls``
    recorded, ``failure_rate_threshold`` percent of them failed, or
    ``slow_call_rate_threshold`` percent took longer than ``slow_call_duration``
    seconds; or after ``fail_max`` consecutive failures. Open, it refuses calls
    at once with :class:`CircuitOpen` (503 in a view) or answers with
    ``fallback``. After ``reset_timeout`` seconds it is half-open: it lets
    ``half_open_calls`` trial calls through, closes when all of them succeed
    and opens again at the first that fails (or is slow).

    The settings of the breaker must be the same wherever the name is used;
    ``failure``, ``failure_result``, ``exclude`` and ``fallback`` belong to the
    decorated function.

    :param name: the dependency guarded; functions with the same name share one breaker.
    :param failure_rate_threshold: percent, 0 < x <= 100; ``None`` opens on no rate.
    :param minimum_calls: calls recorded before a rate counts (at most ``window_size``).
    :param window_size: the calls the rates are computed over.
    :param slow_call_duration: seconds; a call that takes longer is slow. ``None``:
        calls are not timed.
    :param slow_call_rate_threshold: percent of slow calls that opens the breaker.
    :param half_open_calls: trial calls while half-open, all of which must succeed.
    :param fail_max: consecutive failures that open it; ``RESILIENCE_CIRCUIT_FAIL_MAX``.
    :param reset_timeout: seconds open before half-open; ``RESILIENCE_CIRCUIT_RESET_TIMEOUT``.
    :param failure: ``failure(error) -> bool``: whether an exception counts as a
        failure (HTTP errors below 500 and ``exclude`` never do).
    :param failure_result: ``failure_result(value) -> bool``: whether a returned
        value counts as a failure (it is returned all the same).
    :param fallback: called with the function's arguments instead of raising
        :class:`CircuitOpen` when the breaker refuses the call. It may be async
        only if the function is. Failures of admitted calls are re-raised.
    :param exclude: exception classes that never count as failures.
    """
    _check_arguments(
        failure_rate_threshold=failure_rate_threshold,
        minimum_calls=minimum_calls,
        window_size=window_size,
        slow_call_duration=slow_call_duration,
        slow_call_rate_threshold=slow_call_rate_threshold,
        half_open_calls=half_open_calls,
        fail_max=fail_max,
        reset_timeout=reset_timeout,
    )
    _check_callables(failure=failure, failure_result=failure_result, fallback=fallback)
    for item in exclude:
        if not (isinstance(item, type) and issubclass(item, Exception)):
            raise TypeError(f"exclude holds {item!r}; expected Exception subclasses.")
    define(
        Definition(
            name,
            failure_rate_threshold,
            minimum_calls,
            window_size,
            slow_call_duration,
            slow_call_rate_threshold,
            half_open_calls,
            fail_max,
            reset_timeout,
        )
    )
    judge = Judge(tuple(exclude), failure, failure_result)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if fallback is not None and _is_async(fallback) and not _is_async(func):
            raise TypeError(f"The fallback of {func!r} is async but the function is not.")
        if _is_async(func):
            guarded = _guard_coroutine(name, func, fallback, judge, slow_call_duration)
            return cast(Callable[P, R], guarded)
        return _guard(name, func, fallback, judge, slow_call_duration)

    return decorate


def _guard(
    name: str,
    func: Callable[P, R],
    fallback: Callable[..., Any] | None,
    judge: Judge,
    slow_after: float | None,
) -> Callable[P, R]:
    # Neither timed nor judged by its value: a call in the closed state goes the
    # shortest way, with no clock read and no lock.
    lean = slow_after is None and judge.failure_result is None
    failed = judge.failed

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if has_request_context() and request.method == "OPTIONS":
            return func(*args, **kwargs)  # preflights pass an open breaker
        breaker = get_breaker(name)
        try:
            admission = breaker.admit()
        except CircuitOpen:
            if fallback is None:
                raise
            return cast(R, fallback(*args, **kwargs))
        if admission is not None or not lean:
            return _run(breaker, admission, judge, slow_after, func, args, kwargs)
        try:
            result = func(*args, **kwargs)
        except Exception as error:
            breaker.record(None, failed(error), False)
            raise
        breaker.succeeded()
        return result

    return wrapper


def _run(
    breaker: Breaker,
    admission: Admission,
    judge: Judge,
    slow_after: float | None,
    func: Callable[..., R],
    args: Any,
    kwargs: Any,
) -> R:
    started = time.perf_counter() if slow_after is not None else 0.0
    try:
        result = func(*args, **kwargs)
    except Exception as error:
        breaker.record(admission, judge.failed(error), _slow(started, slow_after))
        raise
    except BaseException:
        breaker.abandon(admission)
        raise
    breaker.record(admission, judge.result_failed(result), _slow(started, slow_after))
    return result


def _slow(started: float, slow_after: float | None) -> bool:
    return slow_after is not None and time.perf_counter() - started > slow_after


def _guard_coroutine(
    name: str,
    func: Callable[P, Any],
    fallback: Callable[..., Any] | None,
    judge: Judge,
    slow_after: float | None,
) -> Callable[P, Awaitable[Any]]:
    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        if has_request_context() and request.method == "OPTIONS":
            return await func(*args, **kwargs)
        breaker = get_breaker(name)
        try:
            admission = breaker.admit()
        except CircuitOpen:
            if fallback is None:
                raise
            result = fallback(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        started = time.perf_counter() if slow_after is not None else 0.0
        try:
            result = await func(*args, **kwargs)
        except Exception as error:
            breaker.record(admission, judge.failed(error), _slow(started, slow_after))
            raise
        except BaseException:  # cancelled
            breaker.abandon(admission)
            raise
        breaker.record(admission, judge.result_failed(result), _slow(started, slow_after))
        return result

    return wrapper


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or asyncio.iscoroutinefunction(func)


def _check_arguments(**values: Any) -> None:
    for key in ("minimum_calls", "window_size", "half_open_calls"):
        _whole(key, values[key])
    if values["fail_max"] is not None:
        _whole("fail_max", values["fail_max"])
    if values["minimum_calls"] > values["window_size"]:
        raise ValueError(
            f"minimum_calls is {values['minimum_calls']} but window_size is"
            f" {values['window_size']}: the window never holds that many calls."
        )
    for key in ("failure_rate_threshold", "slow_call_rate_threshold"):
        value = values[key]
        if value is None and key == "failure_rate_threshold":
            continue
        if not (_is_number(value) and 0 < value <= 100):
            raise ValueError(f"{key} is {value!r}; expected a percentage, 0 < x <= 100.")
    reset_timeout = values["reset_timeout"]
    if reset_timeout is not None and not (_is_number(reset_timeout) and reset_timeout >= 0):
        raise ValueError(f"reset_timeout is {reset_timeout!r}; expected a number of seconds >= 0.")
    slow = values["slow_call_duration"]
    if slow is not None and not (_is_number(slow) and slow > 0):
        raise ValueError(f"slow_call_duration is {slow!r}; expected a number of seconds > 0.")


def _whole(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} is {value!r}; expected a whole number >= 1.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_callables(**values: Any) -> None:
    for key, value in values.items():
        if value is not None and not callable(value):
            raise TypeError(f"{key} is {value!r}; expected a callable.")
