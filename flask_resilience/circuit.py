"""``@circuit_breaker``: stop calling a dependency that keeps failing, built on pybreaker.

Where breakers live
    A breaker guards a dependency (a payment API, a search cluster), not an app,
    so the decorator only records a *definition* in a module-level registry keyed
    by name; every function decorated with the same name shares one breaker. The
    live breaker, with its state and counters, is made on first use: one per app
    that ``Resilience`` was set up on (``app.extensions["resilience"].breakers``,
    listed by ``Resilience.circuit_breakers()``), and one per process for code
    that runs outside an app context.

Where state lives
    In memory by default, so each worker process trips on its own. With
    ``RESILIENCE_CIRCUIT_STORAGE_URI = "redis://..."`` it lives in one Redis hash
    per breaker, ``flask_resilience:circuit:<name>``, shared by every worker and
    instance. pybreaker's own ``CircuitRedisStorage`` is not used: its
    constructor writes to Redis (with SETNX, so a stored state survives, but it
    raises when Redis is down at start-up), it keeps ``opened_at`` in whole
    seconds, and while Redis is down it answers "closed, no failures", so the
    breaker can never open. ``_FailoverStorage`` below sends nothing until the
    breaker is used, never writes on creation, and while Redis is unreachable
    keeps the state in the process, which the breaker then protects on its own.

Why ``call`` is overridden
    ``pybreaker.CircuitBreaker.call`` holds the breaker's lock for the whole
    guarded call, which would let one slow dependency call at a time through
    each process. Here the lock (and the storage's atomic scripts) only cover
    the bookkeeping before and after the call.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import pybreaker
from flask import Flask, has_request_context, request
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from .errors import ProblemError
from .log import ExtensionLogger, hide_password
from .state import ResilienceState, current_settings, find_state

if TYPE_CHECKING:
    from redis import Redis


P = ParamSpec("P")
R = TypeVar("R")

logger = ExtensionLogger("circuit")

STATE_CLOSED = pybreaker.STATE_CLOSED
STATE_OPEN = pybreaker.STATE_OPEN
STATE_HALF_OPEN = pybreaker.STATE_HALF_OPEN

REDIS_KEY_PREFIX = "flask_resilience:circuit:"
_REDIS_TIMEOUT = 0.5  # seconds; a URI's socket_timeout / socket_connect_timeout wins
_RETRY_REDIS_AFTER = (1.0, 30.0)
_MIN_TRIAL_LEASE = 1.0  # seconds  # first and longest pause before trying Redis again


class CircuitOpen(ProblemError, ServiceUnavailable, pybreaker.CircuitBreakerError):
    """A circuit breaker refused the call: 503 with ``Retry-After`` in a view.

    Also a ``pybreaker.CircuitBreakerError``. The breaker's name is kept on the
    exception (``breaker``), not in the response: it names an internal dependency.

    :param retry_after: seconds until the breaker lets a trial call through;
        ``retry_after`` on the exception holds them rounded up.
    """

    kind = "breaker-open"

    def __init__(self, breaker: str, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            f"A service this request needs is unavailable; try again in {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )
        self.breaker = breaker
        self.retry_after = seconds  # Werkzeug's attribute: whole seconds


# --- storage -----------------------------------------------------------------


class _MemoryStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker's memory storage plus a count of trial calls in progress."""

    def __init__(self) -> None:
        super().__init__(STATE_CLOSED)
        self._trials = 0

    def acquire_trial(self, limit: int, lease: float) -> bool:
        # A trial in this process always ends (release or abandon): no lease needed.
        if self._trials >= limit:
            return False
        self._trials += 1
        return True

    def release_trial(self) -> None:
        self._trials = max(0, self._trials - 1)

    def reset_trials(self) -> None:
        self._trials = 0

    def try_half_open(self) -> None:
        if self.state == STATE_OPEN:
            self.state = STATE_HALF_OPEN


# A process killed during a trial never gives its place back; after ``lease``
# seconds without a new trial, the places taken are presumed lost.
_ACQUIRE_TRIAL = """
local now = tonumber(ARGV[2])
local n = redis.call('HINCRBY', KEYS[1], 'trials', 1)
if n > tonumber(ARGV[1]) then
  local last = tonumber(redis.call('HGET', KEYS[1], 'trial_at') or '0')
  if now - last < tonumber(ARGV[3]) then
    redis.call('HINCRBY', KEYS[1], 'trials', -1)
    return 0
  end
  redis.call('HSET', KEYS[1], 'trials', 1)
end
redis.call('HSET', KEYS[1], 'trial_at', ARGV[2])
return 1
"""

_TRY_HALF_OPEN = """
if redis.call('HGET', KEYS[1], 'state') == 'open' then
  redis.call('HSET', KEYS[1], 'state', 'half-open')
end
"""

_RELEASE_TRIAL = """
if tonumber(redis.call('HGET', KEYS[1], 'trials') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'trials', -1)
end
"""


class _RedisStorage(pybreaker.CircuitBreakerStorage):
    """One breaker's state in a Redis hash; a missing hash reads as closed.

    Nothing is written when it is created, so a new process never resets what
    the others stored. Redis errors propagate to ``_FailoverStorage``.
    """

    def __init__(self, client: Redis, name: str) -> None:
        super().__init__("redis")
        self._client = client
        self.key = REDIS_KEY_PREFIX + name
        self._acquire = client.register_script(_ACQUIRE_TRIAL)
        self._release = client.register_script(_RELEASE_TRIAL)
        self._half_open = client.register_script(_TRY_HALF_OPEN)

    def _get(self, field: str) -> str | None:
        value = self._client.hget(self.key, field)
        return None if value is None else cast(bytes, value).decode()

    @property
    def state(self) -> str:
        return self._get("state") or STATE_CLOSED

    @state.setter
    def state(self, state: str) -> None:
        self._client.hset(self.key, "state", state)

    def increment_counter(self) -> None:
        self._client.hincrby(self.key, "failures", 1)

    def reset_counter(self) -> None:
        self._client.hset(self.key, "failures", 0)

    def increment_success_counter(self) -> None:
        self._client.hincrby(self.key, "successes", 1)

    def reset_success_counter(self) -> None:
        self._client.hset(self.key, "successes", 0)

    @property
    def counter(self) -> int:
        return int(self._get("failures") or 0)

    @property
    def success_counter(self) -> int:
        return int(self._get("successes") or 0)

    @property
    def opened_at(self) -> datetime | None:
        value = self._get("opened_at")
        return None if value is None else datetime.fromtimestamp(float(value), timezone.utc)

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        self._client.hset(self.key, "opened_at", repr(when.timestamp()))

    def acquire_trial(self, limit: int, lease: float) -> bool:
        now = repr(time.time())
        return bool(self._acquire(keys=[self.key], args=[limit, now, repr(float(lease))]))

    def release_trial(self) -> None:
        self._release(keys=[self.key])

    def reset_trials(self) -> None:
        self._client.hset(self.key, "trials", 0)

    def try_half_open(self) -> None:
        self._half_open(keys=[self.key])


class _RedisLink:
    """One app's Redis client and whether it is usable, shared by its breakers.

    After a Redis error every breaker of the app keeps its state in memory and
    Redis is tried again after 1 s, then 2, 4 … up to 30 s while it stays down,
    so a dead Redis costs one failed command per pause, not one per call.
    """

    def __init__(self, uri: str) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.uri = uri
        self.client: Redis = redis.Redis.from_url(
            uri,
            socket_timeout=_REDIS_TIMEOUT,
            socket_connect_timeout=_REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self.errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._pause = 0.0

    def usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, error: Exception) -> None:
        with self._lock:
            if not self.usable():
                return  # another thread's command failed first and set the pause
            first, longest = _RETRY_REDIS_AFTER
            self._pause = min(longest, self._pause * 2) if self._pause else first
            self._down_until = time.monotonic() + self._pause
            logger.warning(
                "Redis at %s is unreachable (%s); circuit breakers keep their state in"
                " this process and try Redis again in %.0f s.",
                hide_password(self.uri),
                error,
                self._pause,
            )

    def succeeded(self) -> None:
        if self._pause:
            with self._lock:
                if self._pause:
                    self._pause = 0.0
                    logger.info(
                        "Redis at %s is reachable again; circuit breakers share their state.",
                        hide_password(self.uri),
                    )


T = TypeVar("T")


class _FailoverStorage(pybreaker.CircuitBreakerStorage):
    """Redis while it answers, this process's memory while it does not."""

    def __init__(self, link: _RedisLink, name: str) -> None:
        super().__init__("redis")
        self._link = link
        self._redis = _RedisStorage(link.client, name)
        self._memory = _MemoryStorage()

    @property
    def backend(self) -> str:
        return "redis" if self._link.usable() else "memory"

    def _run(self, operation: Callable[[Any], Any]) -> Any:
        if self._link.usable():
            try:
                result = operation(self._redis)
            except self._link.errors as error:
                self._link.failed(error)
            else:
                self._link.succeeded()
                return result
        return operation(self._memory)

    @property
    def state(self) -> str:
        return cast("str", self._run(lambda storage: storage.state))

    @state.setter
    def state(self, state: str) -> None:
        self._run(lambda storage: setattr(storage, "state", state))

    def increment_counter(self) -> None:
        self._run(lambda storage: storage.increment_counter())

    def reset_counter(self) -> None:
        self._run(lambda storage: storage.reset_counter())

    def increment_success_counter(self) -> None:
        self._run(lambda storage: storage.increment_success_counter())

    def reset_success_counter(self) -> None:
        self._run(lambda storage: storage.reset_success_counter())

    @property
    def counter(self) -> int:
        return cast("int", self._run(lambda storage: storage.counter))

    @property
    def success_counter(self) -> int:
        return cast("int", self._run(lambda storage: storage.success_counter))

    @property
    def opened_at(self) -> datetime | None:
        return cast("datetime | None", self._run(lambda storage: storage.opened_at))

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        self._run(lambda storage: setattr(storage, "opened_at", when))

    def acquire_trial(self, limit: int, lease: float) -> bool:
        return bool(self._run(lambda storage: storage.acquire_trial(limit, lease)))

    def release_trial(self) -> None:
        self._run(lambda storage: storage.release_trial())

    def reset_trials(self) -> None:
        self._run(lambda storage: storage.reset_trials())

    def try_half_open(self) -> None:
        self._run(lambda storage: storage.try_half_open())


# --- the breaker -------------------------------------------------------------


def _is_client_error(error: Exception) -> bool:
    """A 4xx the guarded code raised on purpose says nothing about the dependency."""
    return isinstance(error, HTTPException) and (error.code or 500) < 500


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = old_state.name if old_state is not None else None
        log = logger.warning if new_state.name == STATE_OPEN else logger.info
        log("Circuit breaker %r: %s -> %s", cb.name, old, new_state.name)


class Breaker(pybreaker.CircuitBreaker):
    """A ``pybreaker.CircuitBreaker`` that does not hold its lock during the call
    and lets at most ``trial_calls`` calls through at once while half-open."""

    def __init__(
        self,
        name: str,
        *,
        fail_max: int,
        reset_timeout: float,
        trial_calls: int,
        exclude: tuple[type[Exception], ...],
        storage: _MemoryStorage | _FailoverStorage,
    ) -> None:
        super().__init__(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=[*exclude, _is_client_error],  # type: ignore[arg-type]
            listeners=[_LogTransitions()],
            state_storage=storage,
            name=name,
            throw_new_error_on_trip=False,
        )
        self.trial_calls = trial_calls
        # How long a trial may hold its place before it is presumed lost.
        self.trial_lease = max(reset_timeout, _MIN_TRIAL_LEASE)
        self.storage = storage
        self.breaker_name = name

    def open(self) -> bool:
        with self._lock:
            self.storage.reset_trials()
            return bool(super().open())

    def seconds_until_trial(self) -> float:
        opened_at = self.storage.opened_at
        if opened_at is None:
            return 0.0
        elapsed = (datetime.now(timezone.utc) - opened_at).total_seconds()
        return max(0.0, self.reset_timeout - elapsed)

    def admit(self) -> bool:
        """Let a call through or raise ``CircuitOpen``; True for a half-open trial."""
        with self._lock:
            state = self.state.name
            if state == STATE_OPEN:
                wait = self.seconds_until_trial()
                if wait > 0:
                    raise CircuitOpen(self.breaker_name, wait)
                # Only one of the processes that see the timeout elapse moves the
                # breaker on; one that is late must not undo a reopening.
                self.storage.try_half_open()
                state = self.state.name
                if state == STATE_OPEN:
                    raise CircuitOpen(self.breaker_name, self.seconds_until_trial())
            if state != STATE_HALF_OPEN:
                return False
            if self.storage.acquire_trial(self.trial_calls, self.trial_lease):
                return True
            raise CircuitOpen(self.breaker_name, 0)

    def record_success(self, trial: bool) -> None:
        with self._lock:
            if trial:
                self.storage.release_trial()
                self.close()  # one good trial is enough
            else:
                self.storage.reset_counter()
            for listener in self.listeners:
                listener.success(self)

    def record_failure(self, error: Exception, trial: bool) -> None:
        if not self.is_system_error(error):
            self.record_success(trial)
            return
        with self._lock:
            if trial:
                self.storage.release_trial()
            self._inc_counter()
            for listener in self.listeners:
                listener.failure(self, error)
            state = self.current_state
            if state == STATE_OPEN:
                return  # another call or process opened it already
            if trial or state == STATE_HALF_OPEN or self.fail_counter >= self.fail_max:
                self.open()

    def abandon(self, trial: bool) -> None:
        """The call ended without an outcome (KeyboardInterrupt, cancellation)."""
        if trial:
            with self._lock:
                self.storage.release_trial()

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        trial = self.admit()
        with self.outcome(trial):
            return func(*args, **kwargs)

    @contextmanager
    def outcome(self, trial: bool) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            self.record_failure(error, trial)
            raise
        except BaseException:
            self.abandon(trial)
            raise
        self.record_success(trial)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            opened_at = self.storage.opened_at
            return {
                "state": self.current_state,
                "fail_counter": self.fail_counter,
                "fail_max": self.fail_max,
                "reset_timeout": self.reset_timeout,
                "opened_at": opened_at.timestamp() if opened_at else None,
                "storage": getattr(self.storage, "backend", "memory"),
            }


# --- registry ----------------------------------------------------------------


@dataclass(frozen=True)
class _Definition:
    name: str
    fail_max: int | None
    reset_timeout: float | None
    trial_calls: int
    exclude: tuple[type[Exception], ...]


_definitions: dict[str, _Definition] = {}
_registry_lock = threading.Lock()


def _define(definition: _Definition) -> None:
    with _registry_lock:
        known = _definitions.setdefault(definition.name, definition)
    if known != definition:
        raise ValueError(
            f"Circuit breaker {definition.name!r} is already defined with other settings"
            f" ({known}); give every use of a name the same settings, or another name."
        )


def _build(definition: _Definition, link: _RedisLink | None) -> Breaker:
    fail_max = definition.fail_max
    reset_timeout = definition.reset_timeout
    return Breaker(
        definition.name,
        fail_max=fail_max if fail_max is not None else current_settings().circuit_fail_max,
        reset_timeout=reset_timeout
        if reset_timeout is not None
        else current_settings().circuit_reset_timeout,
        trial_calls=definition.trial_calls,
        exclude=definition.exclude,
        storage=_FailoverStorage(link, definition.name) if link else _MemoryStorage(),
    )


@dataclass
class Breakers:
    """The circuit part's state for one app: its live breakers, and its Redis link."""

    breakers: dict[str, Breaker] = field(default_factory=dict)
    link: _RedisLink | None = None


_process = Breakers()
"""The breakers of code that runs outside any app (a job, a command)."""


def _current_breakers() -> Breakers:
    state = find_state()
    found = state.find(Breakers) if state is not None else None
    return found if found is not None else _process


def get_breaker(name: str) -> Breaker:
    """The live breaker called ``name``: the current app's, else this process's."""
    part = _current_breakers()
    breakers = part.breakers
    breaker = breakers.get(name)
    if breaker is None:
        with _registry_lock:
            definition = _definitions.get(name)
        if definition is None:
            raise LookupError(f"No circuit breaker is called {name!r}.")
        with _registry_lock:
            breaker = breakers.get(name)
            if breaker is None:
                breaker = breakers[name] = _build(definition, part.link)
    return breaker


def init_app(app: Flask, state: ResilienceState) -> None:
    """Keep the app's breakers; connect them to Redis when ``RESILIENCE_CIRCUIT_STORAGE_URI``
    is set.

    Nothing is sent to Redis here: an app must start while Redis is down.
    """
    uri = state.settings.circuit_storage_uri
    part = state.add(Breakers(link=_RedisLink(uri) if uri is not None else None))
    if part.link is not None:
        state.add_cleanup(part.link.client.close, name="circuit breaker Redis")
    # Read in the app's context (detailed health, the monitor, the command line).
    state.detail_providers["circuit_breakers"] = breaker_states


def breaker_states() -> dict[str, dict[str, Any]]:
    """Every defined breaker's state and counters, as the current app sees them."""
    with _registry_lock:
        names = sorted(_definitions)
    return {name: get_breaker(name).snapshot() for name in names}


# --- the decorator -----------------------------------------------------------


def circuit_breaker(
    name: str,
    *,
    fail_max: int | None = None,
    reset_timeout: float | None = None,
    fallback: Callable[..., Any] | None = None,
    exclude: tuple[type[Exception], ...] = (),
    trial_calls: int = 1,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Guard a function with the circuit breaker called ``name``.

    After ``fail_max`` consecutive failures the breaker opens: calls are refused
    at once with :class:`CircuitOpen` (503 in a view) or answered by ``fallback``.
    After ``reset_timeout`` seconds it lets ``trial_calls`` calls through at once:
    a success closes it, a failure opens it again.

    :param name: the dependency guarded; functions with the same name share one breaker.
    :param fail_max: defaults to ``RESILIENCE_CIRCUIT_FAIL_MAX``.
    :param reset_timeout: seconds; defaults to ``RESILIENCE_CIRCUIT_RESET_TIMEOUT``.
    :param fallback: called with the function's arguments instead of raising
        :class:`CircuitOpen` when the breaker refuses the call. It may be async
        only if the function is. Failures of admitted calls are re-raised.
    :param exclude: exception classes that do not count as failures (HTTP errors
        below 500 never do).
    :param trial_calls: calls let through at once while half-open.
    """
    _check_arguments(fail_max, reset_timeout, exclude, trial_calls)
    _define(_Definition(name, fail_max, reset_timeout, trial_calls, tuple(exclude)))

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if fallback is not None and _is_async(fallback) and not _is_async(func):
            raise TypeError(f"The fallback of {func!r} is async but the function is not.")
        if _is_async(func):
            return cast(Callable[P, R], _guard_coroutine(name, func, fallback))
        return _guard(name, func, fallback)

    return decorate


def _guard(name: str, func: Callable[P, R], fallback: Callable[..., Any] | None) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if _is_preflight():
            return func(*args, **kwargs)
        breaker = get_breaker(name)
        try:
            trial = breaker.admit()
        except CircuitOpen:
            if fallback is None:
                raise
            return cast(R, fallback(*args, **kwargs))
        with breaker.outcome(trial):
            return func(*args, **kwargs)

    return wrapper


def _guard_coroutine(
    name: str, func: Callable[P, Any], fallback: Callable[..., Any] | None
) -> Callable[P, Awaitable[Any]]:
    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        if _is_preflight():
            return await func(*args, **kwargs)
        breaker = get_breaker(name)
        try:
            trial = breaker.admit()
        except CircuitOpen:
            if fallback is None:
                raise
            result = fallback(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        with breaker.outcome(trial):
            return await func(*args, **kwargs)

    return wrapper


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or asyncio.iscoroutinefunction(func)


def _is_preflight() -> bool:
    return has_request_context() and request.method == "OPTIONS"


def _check_arguments(
    fail_max: int | None,
    reset_timeout: float | None,
    exclude: tuple[type[Exception], ...],
    trial_calls: int,
) -> None:
    if fail_max is not None and (not isinstance(fail_max, int) or fail_max < 1):
        raise ValueError(f"fail_max is {fail_max!r}; expected a whole number >= 1.")
    if reset_timeout is not None and (
        not isinstance(reset_timeout, (int, float)) or not 0 <= reset_timeout < math.inf
    ):
        raise ValueError(f"reset_timeout is {reset_timeout!r}; expected a number of seconds >= 0.")
    if not isinstance(trial_calls, int) or trial_calls < 1:
        raise ValueError(f"trial_calls is {trial_calls!r}; expected a whole number >= 1.")
    for item in exclude:
        if not (isinstance(item, type) and issubclass(item, Exception)):
            raise TypeError(f"exclude holds {item!r}; expected Exception subclasses.")
