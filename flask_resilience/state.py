"""The extension's state for one app, ``app.extensions["resilience"]``, and its accessors.

It sits at the bottom of the package's imports: it knows the settings and the
request hooks, and nothing of the parts. Each part (breakers, bulkheads, guards,
health, limits, lifecycle, pools) keeps a state object of its own, registered here
by the part's ``init_app`` with :meth:`ResilienceState.add` and found again by the
part's own accessor with :meth:`ResilienceState.get`. What one part offers
another goes through this state too, never through the other part's names: health
checks, detail providers for detailed health and the command line, and the
cleanups a shutdown runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app
from flask.globals import _cv_app

from .config import DEFAULT_SETTINGS, Settings
from .pipeline import RequestPath

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from flask_sqlalchemy import SQLAlchemy

EXTENSION_KEY = "resilience"
T = TypeVar("T")

DEFAULT_CLEANUP_TIMEOUT = 5.0


@dataclass(frozen=True)
class HealthCheck:
    """A registered health check: its name is the ``component:measurement`` key of the answer.

    :param component_type: the answer's ``componentType``: ``datastore`` for a
        database or a cache, ``system`` for the machine (disk, memory), ``component``
        for anything else.
    :param component_id: the answer's ``componentId``, which instance of the
        component this is (a database's bind name); shown on the public answers.
    """

    name: str
    func: Callable[[], Any]
    critical: bool = False
    timeout: float | None = None
    component_type: str = "component"
    component_id: str | None = None


FinishHook = Callable[["WSGIEnvironment", float], None]
"""Called with a request's environ and the seconds the app took, once it has answered."""


@dataclass(eq=False)
class OwnCleanup:
    """A cleanup of the extension's own resources (a pool, a Redis client), run at shutdown
    after every cleanup of the app's, which may still need them."""

    function: Callable[[], object]
    name: str
    timeout: float = DEFAULT_CLEANUP_TIMEOUT


@dataclass(eq=False)
class ResilienceState:
    """What the extension keeps for one app.

    :param shared: registrations made on the :class:`~flask_resilience.Resilience`
        instance, shared by every app it serves (health checks, alert callbacks,
        guard callbacks, cleanups): the same objects, so that one registered after
        ``init_app`` reaches the app too.
    """

    settings: Settings
    db: SQLAlchemy | None = None
    path: RequestPath = field(default_factory=RequestPath)
    # Set when a graceful shutdown begins: readiness then answers 503.
    draining: threading.Event = field(default_factory=threading.Event)
    # The checks of the parts for this app (the rate limiter's storage), and those
    # registered on the Resilience instance, shared by its apps.
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    shared_health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    alert_callbacks: list[Callable[[Any], Any]] = field(default_factory=list)
    # A part's state for detailed health and ``flask resilience status``, by name.
    detail_providers: dict[str, Callable[[], Any]] = field(default_factory=dict)
    # What an operator may change at run time, by the same names: called with a
    # target and an action (``controls["circuit_breakers"]("payments", "open")``),
    # it answers what to show; LookupError for an unknown target, ValueError for
    # an unknown action.
    controls: dict[str, Callable[[str, str], Any]] = field(default_factory=dict)
    own_cleanups: list[OwnCleanup] = field(default_factory=list)
    finish_hooks: list[FinishHook] = field(default_factory=list)
    # Set by the guards: whether the request's user holds a permission, through the
    # permission loader (False, quietly, without one). Health opens its internals to it.
    permission_check: Callable[[str], bool] | None = None
    _parts: dict[type, object] = field(default_factory=dict, repr=False)

    def add(self, part: T) -> T:
        """Keep ``part``, a part's state object, found again with ``get(type(part))``."""
        self._parts[type(part)] = part
        return part

    def get(self, kind: type[T]) -> T:
        """The state object of the part ``kind``; ``LookupError`` when it is off."""
        try:
            found = self._parts[kind]
        except KeyError:
            raise LookupError(f"{kind.__name__} is not set up for this app.") from None
        assert isinstance(found, kind)
        return found

    def find(self, kind: type[T]) -> T | None:
        found = self._parts.get(kind)
        return found if isinstance(found, kind) else None

    def add_cleanup(
        self, function: Callable[[], object], *, name: str, timeout: float = DEFAULT_CLEANUP_TIMEOUT
    ) -> None:
        self.own_cleanups.append(OwnCleanup(function, name, timeout))


def get_state(app: Flask | None = None) -> ResilienceState:
    """The state of ``app``, or of the current app; says what to do when there is none."""
    app = app or current_app
    try:
        state = app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "The current Flask app is not registered with flask_resilience."
            " Did you forget to call 'resilience.init_app(app)'?"
        ) from None
    assert isinstance(state, ResilienceState)
    return state


def find_state() -> ResilienceState | None:
    """The current app's state; ``None`` outside an app context or in an app without it.

    Read from Flask's context variable rather than through ``current_app``: the
    decorators ask on every call, and the proxy costs more than their own work.
    """
    context = _cv_app.get(None)
    if context is None:
        return None
    state = context.app.extensions.get(EXTENSION_KEY)
    return state if isinstance(state, ResilienceState) else None


TimeLeft = Callable[[], float | None]


def _no_deadline() -> float | None:
    return None


_time_left: TimeLeft = _no_deadline


def offer_time_left(source: TimeLeft) -> None:
    """Name the function that tells the seconds left before the current deadline.

    The deadlines part offers it (the extension wires it up); the parts that bound
    their own waits by the deadline, outbound calls and retries, ask
    :func:`time_left`, as parts never import each other.
    """
    global _time_left
    _time_left = source


def time_left() -> float | None:
    """Seconds left before the current deadline (negative once it passed), or ``None``
    when there is none: outside a request, or in a request without a deadline."""
    return _time_left()


def current_settings() -> Settings:
    """The current app's settings, or the defaults outside an app.

    The decorators ask when they run, so that they work in plain service code as
    well as in a request of an app that ``Resilience`` was set up on.
    """
    state = find_state()
    return DEFAULT_SETTINGS if state is None else state.settings
