"""Sessions that cannot crash a request: validation, server-side timeouts, rotation.

Each piece sits where it must, and an app only pays for what it turns on:

* The app's session interface is wrapped, because a cookie that cannot be decoded
  raises while Flask opens the session, before any hook or error handler runs.
  The wrapper answers it with a fresh, empty session that deletes the cookie.
* The first look of each request (see ``hooks``), which runs before every other
  ``before_request`` function, checks what the session holds
  (``RESILIENCE_SESSION_SCHEMA``, the ``session_validator``) and its age, before
  anything else (a Flask-Login user load, say) trusts it; an expired session is
  answered 401 by the gate, once other extensions' hooks have seen the request. A hook, not
  ``open_session``: the validator may read ``flask.session`` and Flask-Login's
  ``current_user``, which do not exist before the session is opened, and a database
  outage it hits must reach the error handlers (503), which errors raised while
  opening the session never do. Flask hooks cost several microseconds a request,
  so it is installed only when there is something to check: a schema or timeouts
  (known at ``init_app``) or a validator (which may be registered later).
* When timeouts are on, the wrapper's ``save_session`` stamps a session the moment
  it first holds something, so its age is counted from then.
* A thin WSGI layer keeps these in place before each request: it wraps an
  interface installed after ``init_app`` and installs the hook once a validator
  is registered after it.

Timestamps are whole seconds from the extension state's ``time_source`` (``time.time``
unless a test sets another), kept in the session itself and checked on the server.
"""

from __future__ import annotations

import functools
import math
import os
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeGuard, TypeVar, cast

from flask import Flask, Request, current_app, g, request, session
from flask import Response as FlaskResponse
from flask.sessions import NullSession, SessionInterface, SessionMixin
from werkzeug.wrappers import Response

from . import access, hooks
from .errors import ConfigurationError, warn
from .hooks import Refusal
from .log import ExtensionLogger, current_request_id

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .extension import _State

P = ParamSpec("P")
R = TypeVar("R")

logger = ExtensionLogger("guards")

STARTED = "_resilience_started"
SEEN = "_resilience_seen"
_STAMPS = (STARTED, SEEN)

MIN_SECRET_KEY_LENGTH = 32
# Keys from tutorials, quickstarts and templates: anyone can sign cookies with them.
_WELL_KNOWN_SECRET_KEYS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "change this",
        "changethis",
        "default",
        "dev",
        "development",
        "development key",
        "flask",
        "hard to guess string",
        "key",
        "my secret key",
        "my-secret-key",
        "mysecretkey",
        "password",
        "s3cr3t",
        "secret",
        "secret key",
        "secret-key",
        "secret_key",
        "secretkey",
        "super secret key",
        "super-secret",
        "super-secret-key",
        "supersecret",
        "supersecretkey",
        "test",
        "testing",
        "you-will-never-guess",
        "your secret key",
        "your-secret-key",
        "your_secret_key",
        "your-secret-key-here",
        "please-change-me",
        '_5#y2l"f4q8z\n\xec]/',
    }
)
MIN_SECRET_KEY_BYTES = 16  # a bytes key is raw randomness: 16 bytes are 128 bits
MIN_DISTINCT_CHARACTERS = 10


def init_app(app: Flask, state: _State) -> None:
    guard = _interface_guarded(state.config)
    if guard:
        _guard_interface(app, state)
    if _checks_needed(state):
        _install_checks(app, state)
    _keep_guards_in_place(app, state, guard)


def _interface_guarded(config: Mapping[str, Any]) -> bool:
    """``RESILIENCE_SESSION_GUARD``, or timeouts, which need the interface's stamps."""
    return bool(config["RESILIENCE_SESSION_GUARD"]) or _timeouts_enabled(config)


def _checks_needed(state: _State) -> bool:
    """Whether the session has anything to be checked against before each request."""
    return (
        state.config["RESILIENCE_SESSION_SCHEMA"] is not None
        or _timeouts_enabled(state.config)
        or state.guards.session_validator is not None
    )


def _guard_interface(app: Flask, state: _State) -> None:
    app.session_interface = GuardedSessionInterface(
        app.session_interface, stamps=_timeouts_enabled(state.config)
    )


def _install_checks(app: Flask, state: _State) -> None:
    """Run :func:`check_session` in the first look of every request, from now on."""
    with state._lock:
        if state.session_checks:
            return
        hooks.add_look(app, state.hooks, check_session)
        state.session_checks = True


def _keep_guards_in_place(app: Flask, state: _State, guard: bool) -> None:
    """Check before each request, before its session is opened, that the guards are in place.

    Another extension may have installed its session interface after ``init_app``,
    and a session validator may have been registered after it. When neither
    happened, this costs two attribute checks a request.
    """
    wsgi_app = app.wsgi_app

    def guarded_wsgi_app(
        environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if guard and not isinstance(app.session_interface, GuardedSessionInterface):
            _guard_replaced_interface(app, state)
        if not state.session_checks and state.guards.session_validator is not None:
            _install_checks(app, state)
        return wsgi_app(environ, start_response)

    app.wsgi_app = guarded_wsgi_app  # type: ignore[method-assign]


def _guard_replaced_interface(app: Flask, state: _State) -> None:
    with state._lock:  # two requests at once must not wrap it twice
        if isinstance(app.session_interface, GuardedSessionInterface):
            return
        _guard_interface(app, state)
    logger.info(
        "app.session_interface was replaced after Resilience.init_app; it is guarded"
        " from this request on. Call init_app after the extension that sets it."
    )


# -- Cookie settings -----------------------------------------------------------------------


def check_cookie_safety(app: Flask, config: Mapping[str, Any]) -> None:
    """Warn about unsafe session cookie settings, or refuse them when strict.

    Development and test setups (``app.debug``, ``app.testing``) are left alone.
    With ``RESILIENCE_VALIDATE_ON_STARTUP`` the startup checks give the same advice,
    once: it is not given here as well.
    """
    if not cookies_checked(app.config):
        return
    problems = cookie_problems(app.config)
    if not problems:
        return
    if config["RESILIENCE_SESSION_STRICT"]:
        raise ConfigurationError(
            "Unsafe session settings (RESILIENCE_SESSION_STRICT is True): " + " ".join(problems)
        )
    if config["RESILIENCE_VALIDATE_ON_STARTUP"]:
        return
    for problem in problems:
        warn(problem)


def cookies_checked(config: Mapping[str, Any]) -> bool:
    """Whether the cookie settings are audited: not in debug or testing set-ups."""
    return not (config.get("DEBUG") or config.get("TESTING"))


def cookie_problems(config: Mapping[str, Any]) -> list[str]:
    """What is unsafe about these session settings; the secret itself is never quoted."""
    secret = secret_key_problem(config.get("SECRET_KEY"))
    return ([secret] if secret else []) + cookie_flag_problems(config)


def secret_key_problem(secret: Any) -> str | None:
    """Why ``SECRET_KEY`` cannot be trusted to sign sessions, or ``None``."""
    if not secret:
        return "SECRET_KEY is not set: sessions cannot be signed."
    if _is_well_known(secret):
        return (
            "SECRET_KEY is a well-known default: anyone can forge session cookies."
            " Generate one with: python -c 'import secrets; print(secrets.token_hex())'."
        )
    if isinstance(secret, bytes):
        if len(secret) < MIN_SECRET_KEY_BYTES:
            return (
                f"SECRET_KEY is {len(secret)} bytes long; expected at least"
                f" {MIN_SECRET_KEY_BYTES} random ones (os.urandom(32))."
            )
        return None
    if len(secret) < MIN_SECRET_KEY_LENGTH:
        return (
            f"SECRET_KEY is {len(secret)} characters long; expected at least"
            f" {MIN_SECRET_KEY_LENGTH} random ones (secrets.token_hex())."
        )
    if len(set(secret)) < MIN_DISTINCT_CHARACTERS:
        return "SECRET_KEY repeats a few characters: it is easy to guess (secrets.token_hex())."
    return None


def cookie_flag_problems(config: Mapping[str, Any]) -> list[str]:
    """Cookie flags that let a session or remember-me cookie leak."""
    problems = []
    if not config.get("SESSION_COOKIE_SECURE"):
        problems.append(
            "SESSION_COOKIE_SECURE is False: the session cookie is sent over plain HTTP too."
        )
    if config.get("SESSION_COOKIE_SAMESITE") is None:
        problems.append(
            "SESSION_COOKIE_SAMESITE is not set: the session cookie goes with cross-site"
            " requests. Set it to 'Lax' or 'Strict'."
        )
    if not config.get("SESSION_COOKIE_HTTPONLY", True):
        problems.append("SESSION_COOKIE_HTTPONLY is False: scripts can read the session cookie.")
    if not config.get("REMEMBER_COOKIE_SECURE", True):
        problems.append(
            "REMEMBER_COOKIE_SECURE is False: Flask-Login's remember-me cookie is sent over"
            " plain HTTP too."
        )
    return problems


def _is_well_known(secret: str | bytes) -> bool:
    text = secret.decode("latin-1") if isinstance(secret, bytes) else str(secret)
    return text.strip().lower() in _WELL_KNOWN_SECRET_KEYS


# -- The session interface -----------------------------------------------------------------


class GuardedSessionInterface(SessionInterface):
    """Wraps the app's session interface; every call goes to it.

    Only opening and saving add something: an unreadable session becomes a fresh
    one, and, with ``stamps``, a session is stamped when it first holds something.
    Attributes of the wrapped interface (``serializer``, ``regenerate``...) are
    reachable through it.
    """

    def __init__(self, inner: SessionInterface, *, stamps: bool = False) -> None:
        self.inner = inner
        self.stamps = stamps
        self.null_session_class = inner.null_session_class
        self.pickle_based = inner.pickle_based
        # Flask calls these on every request; where the wrapper adds nothing, they
        # are the wrapped interface's own methods, without a call in between.
        self.is_null_session = inner.is_null_session  # type: ignore[method-assign]
        if not stamps:
            self.save_session = inner.save_session  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, unpickling): no endless lookup
            raise AttributeError(name)
        return getattr(self.inner, name)

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        try:
            opened = self.inner.open_session(app, request)
        except Exception as error:
            _log_unreadable(f"decoding it raised {type(error).__name__}")
            return self._fresh_session(app, request)
        # The cookie interface answers a bad signature with an empty session. Most
        # empty sessions come without any cookie: that test comes first.
        if (
            opened is not None
            and not opened
            and request.cookies
            and self.inner.get_cookie_name(app) in request.cookies
        ):
            _log_unreadable("its signature is invalid or it is too old")
            opened.modified = True  # so that saving it deletes the cookie
        return opened

    def _fresh_session(self, app: Flask, request: Request) -> SessionMixin | None:
        """The session the wrapped interface gives a request without cookies."""
        environ = dict(request.environ)
        environ.pop("HTTP_COOKIE", None)
        try:
            fresh = self.inner.open_session(app, app.request_class(environ))
        except Exception:
            logger.exception("Opening a fresh session failed [request_id=%s]", current_request_id())
            return None  # Flask falls back to its null session
        if fresh is not None:
            fresh.modified = True
        return fresh

    def save_session(self, app: Flask, session: SessionMixin, response: FlaskResponse) -> None:
        # Only with stamps: otherwise the instance has the wrapped interface's own.
        _update_stamps(app, session)
        self.inner.save_session(app, session, response)

    def make_null_session(self, app: Flask) -> NullSession:
        return self.inner.make_null_session(app)

    def get_cookie_name(self, app: Flask) -> str:
        return self.inner.get_cookie_name(app)

    def get_cookie_domain(self, app: Flask) -> str | None:
        return self.inner.get_cookie_domain(app)

    def get_cookie_path(self, app: Flask) -> str:
        return self.inner.get_cookie_path(app)

    def get_cookie_httponly(self, app: Flask) -> bool:
        return self.inner.get_cookie_httponly(app)

    def get_cookie_secure(self, app: Flask) -> bool:
        return self.inner.get_cookie_secure(app)

    def get_cookie_samesite(self, app: Flask) -> str | None:
        return self.inner.get_cookie_samesite(app)

    def get_cookie_partitioned(self, app: Flask) -> bool:
        return self.inner.get_cookie_partitioned(app)

    def get_expiration_time(self, app: Flask, session: SessionMixin) -> datetime | None:
        return self.inner.get_expiration_time(app, session)

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        return self.inner.should_set_cookie(app, session)


def _log_unreadable(why: str) -> None:
    logger.warning(
        "The session cookie could not be read (%s); the request goes on with an empty"
        " session [request_id=%s]",
        why,
        current_request_id(),
    )


def _update_stamps(app: Flask, session: SessionMixin) -> None:
    """Stamp a session that holds something for the first time; unstamp an emptied one."""
    state: _State = app.extensions["resilience"]
    holds_something = any(key not in _STAMPS for key in session)
    if holds_something and STARTED not in session:
        session[STARTED] = session[SEEN] = math.floor(state.time_source())
    elif not holds_something:
        for key in _STAMPS:
            session.pop(key, None)


# -- The check at the start of each request -------------------------------------------------


class _Invalid(Exception):
    """The session holds something it must not; the message says what, never the value."""


def check_session() -> Refusal | None:
    """Clear a session that fails its checks; refuse an expired one (401 or a redirect)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # Without a session cookie there is nothing to check; leaving the session
    # untouched also keeps "Vary: Cookie" off anonymous answers.
    if app.session_interface.get_cookie_name(app) not in request.cookies:
        return None
    current = session._get_current_object()  # type: ignore[attr-defined]
    if not current:
        return None
    state = access.state()
    try:
        _check_schema(current, state.config["RESILIENCE_SESSION_SCHEMA"])
        expired = _check_age(current, state)
        if expired is None:
            _run_validator(current, state)
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
    if request.method in access.EXEMPT_METHODS or _exempt_from_expiry():
        return None
    return _refuse_expired


def _refuse_expired() -> Response:
    return access.refuse_unauthenticated(
        "session-expired", "Your session has expired. Log in again."
    )


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


def _timeouts_enabled(config: Mapping[str, Any]) -> bool:
    return (
        config["RESILIENCE_SESSION_IDLE_TIMEOUT"] is not None
        or config["RESILIENCE_SESSION_ABSOLUTE_TIMEOUT"] is not None
    )


def _check_age(current: SessionMixin, state: _State) -> str | None:
    """Which timeout the session ran out of, or ``None``; refreshes its last use."""
    config = state.config
    if not _timeouts_enabled(config):
        return None
    now = state.time_source()
    started, seen = current.get(STARTED), current.get(SEEN)
    if started is None and seen is None:
        # Written before timeouts were turned on: its age counts from now.
        current[STARTED] = current[SEEN] = math.floor(now)
        return None
    if not _is_stamp(started) or not _is_stamp(seen):
        raise _Invalid("its timestamps are missing or not numbers")
    absolute = config["RESILIENCE_SESSION_ABSOLUTE_TIMEOUT"]
    if absolute is not None and now - started > absolute:
        return f"{now - started:.0f} s old, absolute timeout {absolute} s"
    idle = config["RESILIENCE_SESSION_IDLE_TIMEOUT"]
    if idle is not None and now - seen > idle:
        return f"unused for {now - seen:.0f} s, idle timeout {idle} s"
    if math.floor(now) > seen:
        current[SEEN] = math.floor(now)
    return None


def _is_stamp(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _run_validator(current: SessionMixin, state: _State) -> None:
    validator = state.guards.session_validator
    if validator is None:
        return
    try:
        verdict = current_app.ensure_sync(validator)(current)
    except Exception as error:
        if access.is_outage(error):
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
    return endpoint == "static" or endpoint.endswith(".static") or access.is_login_view()


# -- Helpers for views -----------------------------------------------------------------------


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


def session_required(*keys: str) -> access.ViewGuard:
    """Answer 401 (or redirect a browser to the login view) unless the session holds ``keys``.

    ::

        @app.get("/api/org/settings")
        @session_required("org_id")
        def org_settings(): ...

    A key must be present, not ``None`` and, when ``RESILIENCE_SESSION_SCHEMA``
    lists it, of its type.

    :raises ConfigurationError: no keys, or a key that is not a non-empty string.
    """
    required = access.required_names("session_required", keys)

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            if request.method not in access.EXEMPT_METHODS and not _holds(required):
                return access.refuse_unauthenticated(
                    "session-required",
                    "This needs a session that holds " + ", ".join(required) + ".",
                    required=required,
                )
            return current_app.ensure_sync(view)(*args, **kwargs)  # type: ignore[no-any-return]

        return wrapper

    return cast(access.ViewGuard, decorate)


def _holds(keys: tuple[str, ...]) -> bool:
    schema = access.state().config["RESILIENCE_SESSION_SCHEMA"] or {}
    for key in keys:
        value = session.get(key)
        if value is None or (key in schema and not matches_types(value, schema[key])):
            return False
    return True
