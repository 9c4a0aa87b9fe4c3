"""The ``Resilience`` extension: reads the configuration and turns every part on.

``init_app`` is the list of the capabilities, in the order they are set up; where
each one's WSGI layer and request hooks run is declared in ``pipeline``.
"""

from __future__ import annotations

import time
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
    signals,
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

    breaker_state_changed = signals.breaker_state_changed
    """Signal sent once per circuit breaker transition (see ``flask_resilience.signals``)."""

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
        began = time.monotonic()
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
        health.finish_startup(state, time.monotonic() - began)

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
        self,
        name: str,
        *,
        critical: bool = False,
        timeout: float | None = None,
        component_type: str = "component",
        component_id: str | None = None,
    ) -> Callable[[CheckFunction], CheckFunction]:
        """Register a health check, before or after ``init_app``::

            @resilience.health_check("search:responseTime", critical=True, timeout=1.0,
                                     component_type="datastore", component_id="primary")
            def search_up():
                return search_client.ping()

        The function returns ``True`` or ``None`` (pass), ``False`` (fail), a status
        string (``"pass"``, ``"warn"``, ``"fail"``) or a
        :class:`~flask_resilience.health.HealthResult`; raising is a fail. It runs
        in an app context, in a thread of its own, bounded by ``timeout``.

        :param name: the key in the answer, ``component:measurement`` (or ``component``);
            neither part may hold a colon.
        :param critical: readiness fails when this check fails.
        :param timeout: seconds; ``RESILIENCE_HEALTH_CHECK_TIMEOUT`` by default.
        :param component_type: the answer's ``componentType``: ``datastore``, ``system``,
            ``component`` (the default) or another well-known term.
        :param component_id: the answer's ``componentId``. It is shown on the public
            answers: name the instance, never its address.
        :raises ValueError: the name, the type or the timeout is not valid.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout is {timeout!r}; expected a number of seconds > 0.")
        if not name or name.count(":") > 1 or "" in name.split(":"):
            raise ValueError(
                f"The health check name {name!r} is not 'component:measurement' or 'component'."
            )
        if not component_type or not isinstance(component_type, str):
            raise ValueError(f"component_type is {component_type!r}; expected a non-empty str.")

        def register(func: CheckFunction) -> CheckFunction:
            self._health_checks[name] = HealthCheck(
                name, func, critical, timeout, component_type, component_id
            )
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

    # The app's availability, as it says it itself (Spring Boot's availability states).
    # Per process: each worker of a server says its own (docs/health.md says why).

    def refuse_traffic(self, reason: str, *, app: Flask | None = None) -> None:
        """Answer readiness 503 with ``reason`` until :meth:`accept_traffic`, in this process.

        For a process that lives but must get no traffic for a while (a cache
        warming, a maintenance step). ``reason`` is shown on the public readiness
        answer: say what, never where. Liveness is not affected.

        :param app: the app; the current app by default.
        """
        health.health_state(app).refuse_traffic(reason)

    def accept_traffic(self, *, app: Flask | None = None) -> None:
        """Let readiness follow the checks again after :meth:`refuse_traffic`."""
        health.health_state(app).accept_traffic()

    def mark_broken(self, reason: str, *, app: Flask | None = None) -> None:
        """Answer liveness (and startup) 503 with ``reason``, in this process: the
        orchestrator restarts it. For a state the process cannot recover from by
        itself (a thread it needs has died, its local state is corrupt), never for a
        dependency that is down: that is readiness's business.
        """
        health.health_state(app).mark_broken(reason)

    def mark_correct(self, *, app: Flask | None = None) -> None:
        """Undo :meth:`mark_broken`: liveness answers 200 again."""
        health.health_state(app).mark_correct()

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
        """Every circuit breaker's state, window and settings, as the current app sees them.

        Keyed by breaker name; each entry has ``state`` (``"closed"``, ``"open"``,
        ``"half-open"``, ``"forced-open"`` or ``"forced-closed"``), ``storage``
        (``"redis"``, or ``"memory"`` when the state is per process, by
        configuration or because Redis is unreachable), this process's window
        (``calls``, ``failure_rate``, ``slow_call_rate`` in percent or ``None``,
        ``consecutive_failures``), ``opened_at`` (a Unix time, or ``None``),
        ``retry_after`` (seconds until a trial, while open) and the breaker's
        settings. Needs an app context.
        """
        get_state()
        return circuit.breaker_states()

    def breaker(self, name: str) -> circuit.Breaker:
        """The current app's live circuit breaker ``name``, for operators::

            breaker = resilience.breaker("payments")
            breaker.state            # "closed", "open", "half-open", "forced-open", "forced-closed"
            breaker.force_open()     # refuse every call until reset()
            breaker.force_closed()   # let every call through, recording nothing, until reset()
            breaker.reset()          # closed with an empty window; releases a forced state

        With Redis storage a forced state holds for every worker and instance until
        it is released; with memory storage, in this process. Needs an app context.

        :raises LookupError: no ``circuit_breaker`` has that name.
        """
        get_state()
        return circuit.get_breaker(name)

    def bulkheads(self) -> dict[str, dict[str, Any]]:
        """Every bulkhead's limit and use in this process, for the current app.

        Keyed by bulkhead name; each entry has ``max_concurrent``, ``max_wait``,
        ``in_use`` and ``rejected``. Needs an app context.
        """
        get_state()
        return bulkheads.bulkhead_states()
