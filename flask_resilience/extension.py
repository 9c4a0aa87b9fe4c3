"""The ``Resilience`` extension: reads the configuration and turns every part on.

``init_app`` is the list of the capabilities, in the order they are set up; where
each one's WSGI layer and request hooks run is declared in ``pipeline``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from flask import Blueprint, Flask, current_app

from . import (
    bulkheads,
    circuit,
    client_errors,
    database,
    deadlines,
    guards,
    health,
    lifecycle,
    limiting,
    log,
    pipeline,
    problems,
    retry,
    shedding,
    startup,
    uploads,
)
from .config import load_config
from .state import (
    DEFAULT_CLEANUP_TIMEOUT,
    EXTENSION_KEY,
    HealthCheck,
    ResilienceState,
    get_state,
    offer_time_left,
)

if TYPE_CHECKING:
    from flask_limiter import Limiter, RouteLimit
    from flask_sqlalchemy import SQLAlchemy

    from .health.monitor import Alert, Monitor

CheckFunction = TypeVar("CheckFunction", bound=Callable[[], Any])
AlertCallback = TypeVar("AlertCallback", bound="Callable[[Alert], Any]")
F = TypeVar("F", bound=Callable[..., object])
V = TypeVar("V", bound=Callable[..., object] | Blueprint)

# Outbound calls and retries keep within the request's deadline: they ask the
# deadlines part for the time left through the shared state.
offer_time_left(deadlines.remaining_time)


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

    access_refused = guards.access_refused
    """Signal sent before a guard answers 401 or 403 (see ``flask_resilience.guards``)."""

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
        self._guards = guards.GuardCallbacks()
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
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "A 'Resilience' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        settings = load_config(app)
        # What may refuse the app comes before anything is changed on it.
        guards.check_cookie_safety(app, settings)
        uploads.init_app(app, settings)
        state = ResilienceState(
            settings,
            db=db or self._db,
            shared_health_checks=self._health_checks,
            alert_callbacks=self._alert_callbacks,
        )
        app.extensions[EXTENSION_KEY] = state

        database.init_app(app, state)
        deadlines.init_app(app, state)
        log.init_app(app, state)
        problems.init_app(app, state)
        shedding.init_app(app, state)
        guards.init_app(app, state, self._guards)
        client_errors.init_app(app, state)
        circuit.init_app(app, state)
        bulkheads.init_app(app, state)
        retry.init_app(app, state)
        limiting.init_app(app, state, self._limiter)
        lifecycle.init_app(app, state, self._cleanups)
        health.init_app(app, state)
        pipeline.build(app, state.path)
        if settings.validate_on_startup:
            startup.validate(app)

    def pool_status(self) -> dict[str | None, dict[str, Any]]:
        """The pool of each engine of the current app: live counters and limits.

        Keyed like ``db.engines`` (``None`` is the default bind). Each entry has
        ``url`` (password hidden), ``pool`` (class name), ``size``, ``checked_out``,
        ``overflow``, ``checked_in`` (``None`` for pools that keep no count) and
        ``limits`` (the pool options in force). Needs an app context.
        """
        state = get_state()
        if state.db is None:
            return {}
        return database.pool_status(state.db, database.pools_of(current_app).options)

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
        return health.health_state().monitor

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

    def current_user_loader(self, callback: F) -> F:
        """Register ``callback() -> user or None``: the user of the current request.

        It takes no argument, unlike Flask-Login's ``user_loader(user_id)``: it
        finds the request's user itself (a token, a header), and wins over
        Flask-Login's ``current_user``. A user whose ``is_authenticated`` is not
        ``True`` counts as anonymous.
        """
        self._guards.current_user_loader = callback
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
        timeout: float = DEFAULT_CLEANUP_TIMEOUT,
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
        lifecycle.lifecycle_of().shutdown()

    def has_permission(self, name: str) -> bool:
        """Whether the current request's user holds the permission ``name``.

        Asks the ``permission_loader`` (once per request, like the guards); no user,
        no loader or a failing loader means no. Needs a request context.
        """
        return guards.has_permission(name)

    def circuit_breakers(self) -> dict[str, dict[str, Any]]:
        """Every circuit breaker's state and counters, as the current app sees them.

        Keyed by breaker name; each entry has ``state`` (``"closed"``, ``"open"`` or
        ``"half-open"``), ``fail_counter``, ``fail_max``, ``reset_timeout``,
        ``opened_at`` (a Unix time, or ``None``) and ``storage`` (``"redis"``, or
        ``"memory"`` when the state is per process, by configuration or because
        Redis is unreachable). Needs an app context.
        """
        get_state()
        return circuit.breaker_states()

    def bulkheads(self) -> dict[str, dict[str, Any]]:
        """Every bulkhead's limit and use in this process, for the current app.

        Keyed by bulkhead name; each entry has ``max_concurrent``, ``max_wait``,
        ``in_use`` and ``rejected``. Needs an app context.
        """
        get_state()
        return bulkheads.bulkhead_states()
