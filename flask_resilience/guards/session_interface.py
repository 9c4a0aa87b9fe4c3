"""The app's session interface, wrapped so that a cookie cannot crash a request.

A cookie that cannot be decoded raises while Flask opens the session, before any
hook or error handler runs: the wrapper answers it with a fresh, empty session that
deletes the cookie. With session timeouts on, it also stamps a session the moment
it first holds something, so that its age is counted from then.

Timestamps are whole seconds from the guards' ``time_source`` (``time.time`` unless
a test sets another), kept in the session itself and checked on the server.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from flask import Flask, Request
from flask import Response as FlaskResponse
from flask.sessions import NullSession, SecureCookieSessionInterface, SessionInterface, SessionMixin

from ..log import ExtensionLogger, current_request_id
from ..state import get_state
from .refusals import GuardState

logger = ExtensionLogger("guards")

STARTED = "_resilience_started"


SEEN = "_resilience_seen"


_STAMPS = (STARTED, SEEN)


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
        # Flask's own cookie interface, not a subclass that may open sessions otherwise.
        self._flask_cookies = type(inner) is SecureCookieSessionInterface
        if not stamps:
            self.save_session = inner.save_session  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, unpickling): no endless lookup
            raise AttributeError(name)
        return getattr(self.inner, name)

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        if self._flask_cookies and app.secret_key and "HTTP_COOKIE" not in request.environ:
            # What Flask's interface gives a request without cookies, without the
            # signing serializer it builds first: most of its cost, on most requests.
            return self.inner.session_class()  # type: ignore[attr-defined, no-any-return]
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
    if not session:  # most requests: nothing to stamp, no stamp to remove
        return
    clock = get_state(app).get(GuardState).time_source
    holds_something = any(key not in _STAMPS for key in session)
    if holds_something and STARTED not in session:
        session[STARTED] = session[SEEN] = math.floor(clock())
    elif not holds_something:
        for key in _STAMPS:
            session.pop(key, None)
