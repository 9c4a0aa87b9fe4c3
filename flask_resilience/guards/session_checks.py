"""The session checks of each request, and the helpers views use on sessions.

The first look of each request (see ``pipeline``), which runs before every other
``before_request`` function, checks what the session holds
(``RESILIENCE_SESSION_SCHEMA``, the ``session_validator``) and its age, before
anything else (a Flask-Login user load, say) trusts it; an expired session is
answered 401 by the gate, once other extensions' hooks have seen the request. A
hook rather than ``open_session``: the validator may read ``flask.session`` and
Flask-Login's ``current_user``, which do not exist before the session is opened,
and a database outage it hits must reach the error handlers (503), which errors
raised while opening the session never do. Flask hooks cost several microseconds
a request, so the checks are only installed when there is something to check: a
schema or timeouts (known at ``init_app``) or a validator (which may be
registered later).

A thin WSGI layer (``session_guard``) keeps these in place before each request: it
wraps an interface installed after ``init_app`` and installs the checks once a
validator is registered after it.
"""

from __future__ import annotations

import math
import os
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

from flask import Flask, current_app, g, request, session
from flask.sessions import SessionMixin
from werkzeug.wrappers import Response

from ..config import Settings
from ..log import ExtensionLogger, current_request_id
from ..pipeline import Refusal
from ..state import ResilienceState
from .refusals import (
    EXEMPT_METHODS,
    GuardState,
    guard_state,
    is_login_view,
    is_outage,
    refuse_unauthenticated,
)
from .session_interface import SEEN, STARTED, GuardedSessionInterface

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = ExtensionLogger("guards")


def init_app(app: Flask, state: ResilienceState, guards: GuardState) -> None:
    guard = _interface_guarded(guards.settings)
    if guard:
        _guard_interface(app, guards)
    if _checks_needed(guards):
        _install_checks(app, state, guards)
    state.path.add_layer("session_guard", _keep_guards_in_place(app, state, guards, guard))


def _interface_guarded(settings: Settings) -> bool:
    """``RESILIENCE_SESSION_GUARD``, or timeouts, which need the interface's stamps."""
    return settings.session_guard or _timeouts_enabled(settings)


def _checks_needed(guards: GuardState) -> bool:
    """Whether the session has anything to be checked against before each request."""
    return (
        guards.settings.session_schema is not None
        or _timeouts_enabled(guards.settings)
        or guards.callbacks.session_validator is not None
    )


def _guard_interface(app: Flask, guards: GuardState) -> None:
    app.session_interface = GuardedSessionInterface(
        app.session_interface, stamps=_timeouts_enabled(guards.settings)
    )


def _install_checks(app: Flask, state: ResilienceState, guards: GuardState) -> None:
    """Run :func:`check_session` in the first look of every request, from now on."""
    with guards.lock:
        if guards.session_checks:
            return
        state.path.add_look(app, check_session)
        guards.session_checks = True


def _keep_guards_in_place(
    app: Flask, state: ResilienceState, guards: GuardState, guard: bool
) -> Callable[[WSGIApplication], WSGIApplication]:
    """A layer that checks before each request, before its session is opened, that the
    guards are in place.

    Another extension may have installed its session interface after ``init_app``,
    and a session validator may have been registered after it. When neither
    happened, this costs two attribute checks a request.
    """

    def layer(wsgi_app: WSGIApplication) -> WSGIApplication:
        def guarded_wsgi_app(
            environ: WSGIEnvironment, start_response: StartResponse
        ) -> Iterable[bytes]:
            if guard and not isinstance(app.session_interface, GuardedSessionInterface):
                _guard_replaced_interface(app, guards)
            if not guards.session_checks and guards.callbacks.session_validator is not None:
                _install_checks(app, state, guards)
            return wsgi_app(environ, start_response)

        return guarded_wsgi_app

    return layer


def _guard_replaced_interface(app: Flask, guards: GuardState) -> None:
    with guards.lock:  # two requests at once must not wrap it twice
        if isinstance(app.session_interface, GuardedSessionInterface):
            return
        _guard_interface(app, guards)
    logger.info(
        "app.session_interface was replaced after Resilience.init_app; it is guarded"
        " from this request on. Call init_app after the extension that sets it."
    )


class _Invalid(Exception):
    """The session holds something it must not; the message says what, never the value."""


def check_session() -> Refusal | None:
    """Clear a session that fails its checks; refuse an expired one (401 or a redirect)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # Without a session cookie there is nothing to check; leaving the session
    # untouched also keeps "Vary: Cookie" off anonymous answers.
    if "HTTP_COOKIE" not in request.environ:  # most requests: no cookie to parse
        return None
    if app.session_interface.get_cookie_name(app) not in request.cookies:
        return None
    current = session._get_current_object()  # type: ignore[attr-defined]
    if not current:
        return None
    guards = guard_state()
    try:
        _check_schema(current, guards.settings.session_schema)
        expired = _check_age(current, guards)
        if expired is None:
            _run_validator(current, guards)
    except _Invalid as invalid:
        _discard(current)
        logger.warning(
            "Session cleared: %s; the request goes on as anonymous [request_id=%s]",
            invalid,
            current_request_id(),
        )
        return None
    if expired is None:
        return None
    _discard(current)
    logger.info("Session expired (%s) [request_id=%s]", expired, current_request_id())
    if request.method in EXEMPT_METHODS or _exempt_from_expiry():
        return None
    return _refuse_expired


def _refuse_expired() -> Response:
    return refuse_unauthenticated("session-expired", "Your session has expired. Log in again.")


def _check_schema(current: SessionMixin, schema: Mapping[str, tuple[type, ...]] | None) -> None:
    for key, types in (schema or {}).items():
        if key in current and not matches_types(current[key], types):
            raise _Invalid(
                f"key {key!r} holds {type(current[key]).__name__},"
                f" expected {' or '.join(kind.__name__ for kind in types)}"
            )


def matches_types(value: Any, types: tuple[type, ...]) -> bool:
    """``isinstance``, except that ``True`` is not an ``int`` unless ``bool`` is listed."""
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _timeouts_enabled(settings: Settings) -> bool:
    return (
        settings.session_idle_timeout is not None or settings.session_absolute_timeout is not None
    )


def _check_age(current: SessionMixin, guards: GuardState) -> str | None:
    """Which timeout the session ran out of, or ``None``; refreshes its last use."""
    settings = guards.settings
    if not _timeouts_enabled(settings):
        return None
    now = guards.time_source()
    started, seen = current.get(STARTED), current.get(SEEN)
    if started is None and seen is None:
        # Written before timeouts were turned on: its age counts from now.
        current[STARTED] = current[SEEN] = math.floor(now)
        return None
    if not _is_stamp(started) or not _is_stamp(seen):
        raise _Invalid("its timestamps are missing or not numbers")
    absolute = settings.session_absolute_timeout
    if absolute is not None and now - started > absolute:
        return f"{now - started:.0f} s old, absolute timeout {absolute} s"
    idle = settings.session_idle_timeout
    if idle is not None and now - seen > idle:
        return f"unused for {now - seen:.0f} s, idle timeout {idle} s"
    if math.floor(now) > seen:
        current[SEEN] = math.floor(now)
    return None


def _is_stamp(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _run_validator(current: SessionMixin, guards: GuardState) -> None:
    validator = guards.callbacks.session_validator
    if validator is None:
        return
    try:
        verdict = current_app.ensure_sync(validator)(current)
    except Exception as error:
        if is_outage(error):
            raise  # a database that is down is a 503, not a bad session
        # Where, not the message: an exception's message may quote the session.
        raise _Invalid(
            f"the session validator raised {type(error).__name__}{_raised_at(error)}"
        ) from error
    if verdict is not True:
        raise _Invalid(f"the session validator returned {type(verdict).__name__}, not True")


def _raised_at(error: Exception) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:  # pragma: no cover - an exception that was raised always has one
        return ""
    last = frames[-1]
    return f" in {last.name} ({os.path.basename(last.filename)}:{last.lineno})"


def _discard(current: SessionMixin) -> None:
    current.clear()
    current.modified = True
    forget_user()


def forget_user() -> None:
    """Drop the user this request has loaded, so the next look-up reads the new session."""
    g.pop("_resilience_guards", None)
    g.pop("_login_user", None)  # Flask-Login's cache of current_user


def _exempt_from_expiry() -> bool:
    """The login view (to log in again) and static files go on, anonymous."""
    endpoint = request.endpoint or ""
    return endpoint == "static" or endpoint.endswith(".static") or is_login_view()


def rotate_session(*, keep: Iterable[str] = ()) -> None:
    """Clear the session and issue it anew, keeping only the keys in ``keep``.

    Call it on login and on any change of privilege, so that a session planted
    before (session fixation) carries nothing over::

        rotate_session(keep=["cart"])
        login_user(user)

    Call it *before* Flask-Login's ``login_user``, which writes the user into the
    session. Timeouts restart. A server-side session interface with a
    ``regenerate(session)`` method (Flask-Session) also gets a new session id.

    :param keep: session keys to carry over, such as a shopping cart.
    """
    if isinstance(keep, (str, bytes)):
        raise TypeError(f"rotate_session(keep=...) takes a list of keys, not {keep!r}.")
    current = session._get_current_object()  # type: ignore[attr-defined]
    kept = {key: current[key] for key in keep if key in current}
    current.clear()
    current.update(kept)
    current.modified = True
    interface = current_app.session_interface
    regenerate = getattr(interface, "regenerate", None)
    if callable(regenerate):
        regenerate(current)
    g.pop("_resilience_guards", None)
    if "_user_id" not in kept:
        g.pop("_login_user", None)


def holds(keys: tuple[str, ...]) -> bool:
    schema = guard_state().settings.session_schema or {}
    for key in keys:
        value = session.get(key)
        if value is None or (key in schema and not matches_types(value, schema[key])):
            return False
    return True
