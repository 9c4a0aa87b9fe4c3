"""The guards' callbacks and state, and how a refusal is answered.

A refusal is always one of two answers. Not authenticated: 401 problem+json for
API clients, a redirect to the login view for browsers when one is configured.
Authenticated but not allowed: 403. Each is announced with the
:data:`access_refused` signal first, so apps can audit it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, ParamSpec, Protocol, TypeVar, overload
from urllib.parse import urlencode

from blinker import Namespace
from flask import Flask, current_app, redirect, request, url_for
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response

from ..config import Settings
from ..errors import ConfigurationError, PermissionDenied, Unauthenticated
from ..log import ExtensionLogger, current_request_id
from ..outages import classify_database_error
from ..state import get_state

logger = ExtensionLogger("guards")

P = ParamSpec("P")
R = TypeVar("R")

_signals = Namespace()

access_refused = _signals.signal("access-refused")
"""Sent with the app as sender before a guard answers 401 or 403.

Keyword arguments: ``user`` (``None`` when not authenticated), ``status`` (401 or
403), ``reason`` (``login-required``, ``session-expired``, ``session-required``,
``permission``, ``role`` or ``organization``), ``required`` (the permission or
role names or session keys the guard asked for; for an organization, the name of
its id) and ``org_id`` (the organization id asked for, if any). A receiver
that raises is logged and ignored: auditing never changes the answer.
"""

EXEMPT_METHODS = frozenset({"OPTIONS"})


class ViewGuard(Protocol):
    """What the guard decorators return.

    The guarded view is a plain function that may answer a redirect instead of
    the view's value; an ``async`` view is run to completion through
    ``app.ensure_sync``, so it becomes a plain view returning what it awaited.
    """

    @overload
    def __call__(self, view: Callable[P, Awaitable[R]]) -> Callable[P, R | Response]: ...

    @overload
    def __call__(self, view: Callable[P, R]) -> Callable[P, R | Response]: ...


@dataclass
class GuardCallbacks:
    """The callbacks registered on the extension, shared by every app it serves."""

    session_validator: Callable[[Any], Any] | None = None
    current_user_loader: Callable[[], Any] | None = None
    permission_loader: Callable[[Any], Any] | None = None
    role_loader: Callable[[Any], Any] | None = None
    org_access_loader: Callable[[Any, Any], Any] | None = None


@dataclass(eq=False)
class GuardState:
    """The guards' state for one app: the callbacks, its settings, the session checks."""

    callbacks: GuardCallbacks
    settings: Settings
    # Whether the session checks run in the first look of each request (see session_checks).
    session_checks: bool = False
    # The session timeouts' clock, in seconds; tests may set another.
    time_source: Callable[[], float] = time.time
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def guard_state(app: Flask | None = None) -> GuardState:
    """The guards' state of ``app``, or of the current app."""
    return get_state(app).get(GuardState)


def required_names(guard: str, names: tuple[Any, ...]) -> tuple[str, ...]:
    """Check a guard's names when it is applied: an empty list would let everyone in."""
    if not names:
        raise ConfigurationError(
            f"{guard}() needs at least one name; with none it would allow everyone."
        )
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"{guard}() got {name!r}; expected non-empty strings.")
    return tuple(names)


def is_outage(error: Exception) -> bool:
    """Whether ``error`` is a backing service being down: answered 503, never a denial."""
    return classify_database_error(error) is not None


def is_browser_request() -> bool:
    """A browser: outside the API prefixes, and preferring HTML to JSON."""
    settings = guard_state().settings
    if settings.error_format == "json":
        return False
    if any(request.path.startswith(prefix) for prefix in settings.api_prefixes):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def login_view() -> str | None:
    """``RESILIENCE_LOGIN_VIEW``, else Flask-Login's ``login_view`` when Flask-Login is set up."""
    configured: str | None = guard_state().settings.login_view
    if configured is None:
        manager = getattr(current_app, "login_manager", None)
        configured = getattr(manager, "login_view", None)
    return configured if isinstance(configured, str) and configured else None


def is_login_view() -> bool:
    view = login_view()
    return view is not None and view in (request.endpoint, request.path)


def refuse_unauthenticated(reason: str, detail: str, *, required: tuple[str, ...] = ()) -> Response:
    """Redirect a browser to the login view, or raise :class:`Unauthenticated`."""
    announce(None, 401, reason, required=required)
    if is_browser_request() and not is_login_view():  # no redirect loop on the login view
        target = _login_url()
        if target is not None:
            return redirect(target, 302 if request.method in {"GET", "HEAD"} else 303)
    raise Unauthenticated(detail, reason=reason)


def refuse_forbidden(
    user: Any, reason: str, detail: str, *, required: tuple[str, ...] = (), org_id: Any = None
) -> NoReturn:
    announce(user, 403, reason, required=required, org_id=org_id)
    raise PermissionDenied(detail, reason=reason)


def announce(
    user: Any, status: int, reason: str, *, required: tuple[str, ...] = (), org_id: Any = None
) -> None:
    if not access_refused.receivers:
        return
    try:
        access_refused.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            user=user,
            status=status,
            reason=reason,
            required=required,
            org_id=org_id,
        )
    except Exception:
        logger.exception(
            "An access_refused receiver failed; the %d answer stands [request_id=%s]",
            status,
            current_request_id(),
        )


def _login_url() -> str | None:
    view = login_view()
    if view is None:
        return None
    if view.startswith(("/", "http://", "https://")):
        base = view
    else:
        try:
            base = url_for(view)
        except BuildError:
            logger.error(
                "The login view %r is not an endpoint of this app; answering 401 instead"
                " of redirecting [request_id=%s]",
                view,
                current_request_id(),
            )
            return None
    # A path on this site only: one starting with two slashes (or a slash and a backslash)
    # would send the browser to another host.
    next_path = "/" + (request.script_root + request.full_path).rstrip("?").lstrip("/\\")
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{urlencode({'next': next_path})}"
