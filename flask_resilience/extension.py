"""The ``Resilience`` extension: reads the configuration and wires every part."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

from flask import Blueprint, Flask, current_app

from . import (
    access,
    circuit,
    client_errors,
    database,
    deadlines,
    health,
    hooks,
    lifecycle,
    limiting,
    log,
    permissions,
    problems,
    retry,
    sessions,
    shedding,
    startup,
    uploads,
)
from .bulkhead import Bulkhead, bulkhead_states
from .config import load_config
from .health.checks import HealthCheck

if TYPE_CHECKING:
    from flask_limiter import Limiter, RouteLimit
    from flask_sqlalchemy import SQLAlchemy

    from .health.monitor import Alert, Monitor

CheckFunction = TypeVar("CheckFunction", bound=Callable[[], Any])
AlertCallback = TypeVar("AlertCallback", bound="Callable[[Alert], Any]")
F = TypeVar("F", bound=Callable[..., object])
V = TypeVar("V", bound=Callable[..., object] | Blueprint)


@dataclass
class _State:
    """What the extension keeps for one app, as ``app.extensions["resilience"]``."""

    extension: Resilience
    config: Mapping[str, Any]
    db: SQLAlchemy | None = None
    pool_options: dict[str | None, database.EngineOptions] = field(default_factory=dict)
    health: health.HealthState | None = None
    # Set when a graceful shutdown begins: readiness then answers 503.
    draining: threading.Event = field(default_factory=threading.Event)
    # Other parts show their state in detailed health ("circuit_breakers", "rate_limit").
    detail_providers: dict[str, Callable[[], Any]] = field(default_factory=dict)
    breakers: dict[str, circuit.Breaker] = field(default_factory=dict)
    circuit_link: circuit._RedisLink | None = None
    bulkheads: dict[str, Bulkhead] = field(default_factory=dict)
    slow_requests: int = 0
    guards: access.GuardCallbacks = field(default_factory=access.GuardCallbacks)
    # Whether the session checks run before each request (see sessions.py).
    session_checks: bool = False
    # The session timeouts' clock, in seconds; tests may set another.
    time_source: Callable[[], float] = time.time
    limiter: Limiter | None = None
    lifecycle: lifecycle.Lifecycle = field(init=False)
    hooks: hooks.RequestHooks = field(default_factory=hooks.RequestHooks)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_slow_request(self) -> None:
        with self._lock:
            self.slow_requests += 1


class Resilience:
    """Keeps a Flask application up.

    ::

        resilience = Resilience()
        resilience.init_app(app, db=db)

    One instance may serve several apps (an application factory); everything it
    knows about an app lives in ``app.extensions["resilience"]``.

    :param app: the app to initialise now; or call :meth:`init_app` later.
    :param db: the app's ``flask_sqlalchemy.SQLAlchemy``, if it has one.
    :param limiter: a ``flask_limiter.Limiter`` of the app's own, not yet initialised;
        by default the extension makes one keyed on the client's address.
    """

    permission_denied = access.permission_denied
    """Signal sent before a guard answers 401 or 403 (see ``flask_resilience.access``)."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self._db = db
        self._health_checks: dict[str, HealthCheck] = {}
        self._alert_callbacks: list[Callable[[Alert], Any]] = []
        self._guards = access.GuardCallbacks()
        self._limiter = limiter or limiting.new_limiter()
        self._cleanups: list[lifecycle.Cleanup] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, db: SQLAlchemy | None = None) -> None:
        """Check the configuration and turn every part on for ``app``.

        :param db: the app's ``flask_sqlalchemy.SQLAlchemy``; overrides the one given
            to the constructor. ``db.init_app(app)`` may run before or after this.
        :raises ConfigurationError: a configuration value is wrong.
        :raises RuntimeError: the app already has a ``Resilience`` instance.
        """
        if "resilience" in app.extensions:
            raise RuntimeError(
                "A 'Resilience' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        state = _State(
            extension=self, config=load_config(app), db=db or self._db, guards=self._guards
        )
        config = state.config
        state.lifecycle = lifecycle.Lifecycle(
            state.draining,
            self._cleanups,
            config["RESILIENCE_SHUTDOWN_TIMEOUT"],
            lifecycle.logger.bound_to(app),
        )

        # The parts that may refuse the app come before anything is changed on it.
        sessions.check_cookie_safety(app, config)
        sessions.init_app(app, state)
        if state.db is not None:
            if config["RESILIENCE_HARDEN_POOL"]:
                state.pool_options = database.harden_pool(app, state.db)
            if config["RESILIENCE_ROLLBACK_ON_ERROR"]:
                database.rollback_on_error(app, state.db)
            database.survive_lost_connection_at_teardown(app, state.db)
        uploads.init_app(app, config)
        app.extensions["resilience"] = state

        deadlines.init_app(app, state.db)
        log.init_app(app, config, on_finish=deadlines.overrun_counter(app))
        if config["RESILIENCE_ERROR_FORMAT"] != "off":
            problems.init_app(app)
        shedding.init_app(
            app,
            state.hooks,
            config["RESILIENCE_MAX_QUEUE_TIME"],
            config["RESILIENCE_HEALTH_URL_PREFIX"],
        )
        if config["RESILIENCE_CLIENT_ERRORS_URL"]:
            client_errors.init_app(app, config["RESILIENCE_CLIENT_ERRORS_URL"])
        circuit.init_app(app, state)
        retry.init_app(app, state)
        limiting.trust_proxies(app, config["RESILIENCE_TRUSTED_PROXIES"])
        limiting.init_app(app, state, self._limiter)
        lifecycle.init_app(app, state)
        health.init_app(app, state)
        # Outermost of the extension's layers: the first request settles every hook.
        hooks.install(app, state.hooks)
        if config["RESILIENCE_VALIDATE_ON_STARTUP"]:
            startup.validate(app)

    def pool_status(self) -> dict[str | None, dict[str, Any]]:
        """The pool of each engine of the current app: live counters and limits.

        Keyed like ``db.engines`` (``None`` is the default bind). Each entry has
        ``url`` (password hidden), ``pool`` (class name), ``size``, ``checked_out``,
        ``overflow``, ``checked_in`` (``None`` for pools that keep no count) and
        ``limits`` (the pool options in force). Needs an app context.
        """
        state = _get_state()
        if state.db is None:
            return {}
        return database.pool_status(state.db, state.pool_options)

    def health_check(
        self, name: str, *, critical: bool = False, timeout: float | None = None
    ) -> Callable[[CheckFunction], CheckFunction]:
        """Register a health check, before or after ``init_app``::

            @resilience.health_check("redis", critical=True, timeout=1.0)
            def redis_up():
                return redis_client.ping()

        The function returns ``True`` or ``None`` (pass), ``False`` (fail), a status
        string (``"pass"``, ``"warn"``, ``"fail"``) or a
        :class:`~flask_resilience.health.HealthResult`; raising is a fail. It runs
        in an app context, in a thread of its own, bounded by ``timeout``.

        :param name: the key in the answer, ``component`` or ``component:measurement``.
        :param critical: readiness fails when this check fails.
        :param timeout: seconds; ``RESILIENCE_HEALTH_CHECK_TIMEOUT`` by default.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout is {timeout!r}; expected a number of seconds > 0.")

        def register(func: CheckFunction) -> CheckFunction:
            self._health_checks[name] = HealthCheck(name, func, critical, timeout)
            return func

        return register

    def on_alert(self, callback: AlertCallback) -> AlertCallback:
        """Call ``callback(alert)`` on every level change of a monitored metric.

        ``alert`` has ``metric``, ``level``, ``previous``, ``value``, ``threshold`` and
        ``time``. It runs on the monitor's thread; an exception is logged and ignored.
        """
        self._alert_callbacks.append(callback)
        return callback

    @property
    def monitor(self) -> Monitor:
        """The current app's background monitor (this process's)."""
        state = _get_state()
        if state.health is None:
            raise RuntimeError("Health is off for this app: RESILIENCE_HEALTH_ENABLED is False.")
        return state.health.monitor

    # Callbacks of the guards, registered like Flask-Login's user_loader, before or
    # after init_app. Each returns the callback, so they work as decorators.

    def session_validator(self, callback: F) -> F:
        """Register ``callback(session) -> bool``, run on every request that has a session.

        Anything but ``True`` (``False``, ``None``, an exception) clears the session
        and the request goes on as anonymous. Registered after ``init_app``, it runs
        from the app's next request on.
        """
        self._guards.session_validator = callback
        return callback

    def user_loader(self, callback: F) -> F:
        """Register ``callback() -> user or None``: the user of the current request.

        It wins over Flask-Login's ``current_user``. A user whose
        ``is_authenticated`` is not ``True`` counts as anonymous.
        """
        self._guards.user_loader = callback
        return callback

    def permission_loader(self, callback: F) -> F:
        """Register ``callback(user) -> iterable of permission names``."""
        self._guards.permission_loader = callback
        return callback

    def role_loader(self, callback: F) -> F:
        """Register ``callback(user) -> iterable of role names``."""
        self._guards.role_loader = callback
        return callback

    def org_access_loader(self, callback: F) -> F:
        """Register ``callback(user, org_id) -> bool``: only ``True`` lets the user in."""
        self._guards.org_access_loader = callback
        return callback

    @property
    def limiter(self) -> Limiter:
        """The ``flask_limiter.Limiter`` doing the rate limiting."""
        return self._limiter

    def limit(self, limit_value: str | Callable[[], str], **options: Any) -> RouteLimit:
        """Rate limit a view (or a blueprint), on top of or instead of the default limit::

            @app.post("/login")
            @resilience.limit("30 per 15 minutes")
            def login(): ...

        :param limit_value: a limit such as ``"30 per 15 minutes"``, or several
            separated by ``;``.
        :param options: Flask-Limiter's ``Limiter.limit`` keyword arguments
            (``key_func``, ``methods``, ``exempt_when``, ``override_defaults`` ...).
        """
        return self._limiter.limit(limit_value, **options)

    def exempt(self, view: V) -> V:
        """Exempt a view, or every view of a blueprint, from the default rate limit."""
        if isinstance(view, Blueprint):  # one call; two branches for Limiter.exempt's overloads
            self._limiter.exempt(view)
        else:
            self._limiter.exempt(view)
        return view

    @overload
    def register_cleanup(
        self, function: None = None, *, timeout: float = ..., name: str | None = ...
    ) -> Callable[[F], F]: ...

    @overload
    def register_cleanup(
        self, function: F, *, timeout: float = ..., name: str | None = ...
    ) -> F: ...

    def register_cleanup(
        self,
        function: F | None = None,
        *,
        timeout: float = lifecycle.DEFAULT_CLEANUP_TIMEOUT,
        name: str | None = None,
    ) -> F | Callable[[F], F]:
        """Call ``function`` once at shutdown, within ``timeout`` seconds.

        Cleanups run newest first; one that raises or hangs never keeps the others
        from running. Usable as a decorator, with or without arguments::

            @resilience.register_cleanup(timeout=2)
            def close_search_client():
                search.close()
        """

        def register(function: F) -> F:
            label = name or lifecycle.cleanup_name(function)
            self._cleanups.append(lifecycle.Cleanup(function, timeout, label))
            return function

        return register if function is None else register(function)

    def shutdown(self) -> None:
        """Shut the current app down gracefully: drain, wait for requests, run cleanups.

        Returns when done, within ``RESILIENCE_SHUTDOWN_TIMEOUT``; a second call
        returns at once. Servers call this for you (SIGTERM, the gunicorn hooks).
        """
        _get_state().lifecycle.shutdown()

    def has_permission(self, name: str) -> bool:
        """Whether the current request's user holds the permission ``name``.

        Asks the ``permission_loader`` (once per request, like the guards); no user,
        no loader or a failing loader means no. Needs a request context.
        """
        user = permissions.current_user()
        if user is None:
            return False
        granted = permissions._granted("permission", user)
        return granted is not None and name in granted

    def circuit_breakers(self) -> dict[str, dict[str, Any]]:
        """Every circuit breaker's state and counters, as the current app sees them.

        Keyed by breaker name; each entry has ``state`` (``"closed"``, ``"open"`` or
        ``"half-open"``), ``fail_counter``, ``fail_max``, ``reset_timeout``,
        ``opened_at`` (a Unix time, or ``None``) and ``storage`` (``"redis"``, or
        ``"memory"`` when the state is per process, by configuration or because
        Redis is unreachable). Needs an app context.
        """
        _get_state()
        return circuit.breaker_states()

    def bulkheads(self) -> dict[str, dict[str, Any]]:
        """Every bulkhead's limit and use in this process, for the current app.

        Keyed by bulkhead name; each entry has ``max_concurrent``, ``max_wait``,
        ``in_use`` and ``rejected``. Needs an app context.
        """
        _get_state()
        return bulkhead_states()


def _get_state(app: Flask | None = None) -> _State:
    app = app or current_app
    try:
        state: _State = app.extensions["resilience"]
    except KeyError:
        raise RuntimeError(
            "The current Flask app is not registered with flask_resilience."
            " Did you forget to call 'resilience.init_app(app)'?"
        ) from None
    return state
