"""``@bulkhead``: cap the concurrent calls of one view or function in a process.

A slow dependency behind one view should not take every worker thread with it.
The cap is per process (a threading semaphore): threads and the event loops
Flask runs async views in all count against it. Like circuit breakers, each app
gets its own bulkhead per name, since the cap defaults to the app's
``RESILIENCE_BULKHEAD_MAX_CONCURRENT``; code outside an app context shares one
per process.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from flask import Flask, has_request_context, request
from werkzeug.exceptions import ServiceUnavailable

from . import signals
from .errors import ProblemError
from .log import ExtensionLogger
from .state import ResilienceState, current_settings, find_state

if TYPE_CHECKING:
    pass

P = ParamSpec("P")
R = TypeVar("R")

logger = ExtensionLogger("bulkhead")

_POLL_SECONDS = 0.005  # how often an async caller waiting for a slot looks again


class BulkheadFull(ProblemError, ServiceUnavailable):
    """Every slot of a bulkhead is taken: 503 with ``Retry-After`` in a view.

    The bulkhead's name is kept on the exception (``bulkhead``), not in the response.
    """

    kind = "bulkhead-full"

    def __init__(self, bulkhead: str, retry_after: int = 1) -> None:
        super().__init__(
            f"The server is busy with this kind of request; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
        self.bulkhead = bulkhead
        self.retry_after = retry_after  # Werkzeug's attribute, for its own rendering


class Bulkhead:
    """A counting semaphore that refuses instead of queueing without bound."""

    def __init__(self, name: str, max_concurrent: int, max_wait: float) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self.in_use = 0
        self.rejected = 0

    def acquire(self) -> None:
        """Take a slot, waiting up to ``max_wait`` seconds, or raise ``BulkheadFull``."""
        got = (
            self._slots.acquire(timeout=self.max_wait)
            if self.max_wait > 0
            else self._slots.acquire(blocking=False)
        )
        self._taken(got)

    async def acquire_async(self) -> None:
        """``acquire`` without blocking the event loop while waiting."""
        deadline = time.monotonic() + self.max_wait
        got = self._slots.acquire(blocking=False)
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(min(_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            got = self._slots.acquire(blocking=False)
        self._taken(got)

    def _taken(self, got: bool) -> None:
        with self._lock:
            if got:
                self.in_use += 1
                return
            self.rejected += 1
        signals.send(signals.bulkhead_rejected, name=self.name)
        # INFO: in a view the 503 is logged as well; ``rejected`` keeps the count.
        logger.info(
            "Bulkhead %r is full (%d concurrent calls); call refused.",
            self.name,
            self.max_concurrent,
        )
        raise BulkheadFull(self.name)

    def release(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._slots.release()

    def snapshot(self) -> dict[str, Any]:
        return {
            "max_concurrent": self.max_concurrent,
            "max_wait": self.max_wait,
            "in_use": self.in_use,
            "rejected": self.rejected,
        }


_definitions: dict[str, tuple[int | None, float]] = {}
_registry_lock = threading.Lock()


@dataclass
class Bulkheads:
    """The bulkhead part's state for one app: its live bulkheads, by name."""

    bulkheads: dict[str, Bulkhead] = field(default_factory=dict)


_process = Bulkheads()
"""The bulkheads of code that runs outside any app (a job, a command)."""


def init_app(app: Flask, state: ResilienceState) -> None:
    state.add(Bulkheads())
    state.detail_providers["bulkheads"] = bulkhead_states


def get_bulkhead(name: str) -> Bulkhead:
    """The live bulkhead called ``name``: the current app's, else this process's."""
    state = find_state()
    part = state.find(Bulkheads) if state is not None else None
    bulkheads = (part or _process).bulkheads
    found = bulkheads.get(name)
    if found is None:
        with _registry_lock:
            found = bulkheads.get(name)
            if found is None:
                max_concurrent, max_wait = _definitions[name]
                if max_concurrent is None:
                    max_concurrent = current_settings().bulkhead_max_concurrent
                found = bulkheads[name] = Bulkhead(name, max_concurrent, max_wait)
    return found


def bulkhead_states() -> dict[str, dict[str, Any]]:
    """Every defined bulkhead's limit and use, as the current app sees them."""
    with _registry_lock:
        names = sorted(_definitions)
    return {name: get_bulkhead(name).snapshot() for name in names}


def _register(
    name: str | None, func: Callable[..., Any], settings: tuple[int | None, float]
) -> str:
    """Record the settings under ``name``, or under a new name made from the function's."""
    with _registry_lock:
        if name is None:
            base = f"{func.__module__}.{getattr(func, '__qualname__', type(func).__qualname__)}"
            name, number = base, 1
            while name in _definitions:  # the same function decorated again: its own slots
                number += 1
                name = f"{base}#{number}"
        known = _definitions.setdefault(name, settings)
    if known != settings:
        raise ValueError(
            f"Bulkhead {name!r} is already defined with max_concurrent={known[0]!r},"
            f" max_wait={known[1]!r}; give every use of a name the same settings."
        )
    return name


def bulkhead(
    max_concurrent: int | None = None, *, max_wait: float = 0, name: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let at most ``max_concurrent`` calls of the function run at once in a process.

    A call over the cap waits up to ``max_wait`` seconds for a slot, then raises
    :class:`BulkheadFull` (503 with ``Retry-After`` in a view). ``OPTIONS``
    requests pass through.

    :param max_concurrent: defaults to ``RESILIENCE_BULKHEAD_MAX_CONCURRENT``.
    :param max_wait: seconds to wait for a slot; 0 refuses at once.
    :param name: functions given the same name share its slots. Without one, each
        decorated function gets its own, named after its module and qualified name.
    """
    if max_concurrent is not None and (
        not isinstance(max_concurrent, int)
        or isinstance(max_concurrent, bool)
        or max_concurrent < 1
    ):
        raise ValueError(f"max_concurrent is {max_concurrent!r}; expected a whole number >= 1.")
    if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)) or not max_wait >= 0:
        raise ValueError(f"max_wait is {max_wait!r}; expected a number of seconds >= 0.")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        key = _register(name, func, (max_concurrent, max_wait))
        if inspect.iscoroutinefunction(func):
            return cast(Callable[P, R], _limit_coroutine(key, func))
        return _limit(key, func)

    return decorate


def _limit(key: str, func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if has_request_context() and request.method == "OPTIONS":
            return func(*args, **kwargs)
        slots = get_bulkhead(key)
        slots.acquire()
        try:
            return func(*args, **kwargs)
        finally:
            slots.release()

    return wrapper


def _limit_coroutine(key: str, func: Callable[P, Any]) -> Callable[P, Awaitable[Any]]:
    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        if has_request_context() and request.method == "OPTIONS":
            return await func(*args, **kwargs)
        slots = get_bulkhead(key)
        await slots.acquire_async()
        try:
            return await func(*args, **kwargs)
        finally:
            slots.release()

    return wrapper
