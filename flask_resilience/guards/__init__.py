"""Session and permission guards that fail closed.

* :mod:`.decorators`: the view decorators (``authentication_required``,
  ``permission_required``, ``role_required``, ``org_access_required``,
  ``session_required``);
* :mod:`.refusals`: the callbacks of the extension, the guards' state, and the
  401/403 answers with the :data:`access_refused` signal;
* :mod:`.users`: who the request's user is and what the loaders grant;
* :mod:`.session_interface`: the wrapped session interface;
* :mod:`.session_checks`: what a session holds and how old it is, checked
  before each request, and ``rotate_session``;
* :mod:`.cookies`: the audit of the session cookie settings.
"""

from __future__ import annotations

from flask import Flask

from ..state import ResilienceState
from . import session_checks
from .cookies import check_cookie_safety
from .decorators import (
    authentication_required,
    org_access_required,
    permission_required,
    role_required,
    session_required,
)
from .refusals import GuardCallbacks, GuardState, access_refused, guard_state
from .session_checks import rotate_session
from .users import has_permission, holds_permission_quietly

__all__ = [
    "GuardCallbacks",
    "access_refused",
    "authentication_required",
    "check_cookie_safety",
    "guard_state",
    "has_permission",
    "init_app",
    "org_access_required",
    "permission_required",
    "role_required",
    "rotate_session",
    "session_required",
]


def init_app(app: Flask, state: ResilienceState, callbacks: GuardCallbacks) -> None:
    """Guard the app's sessions; ``callbacks`` are the extension's, shared by its apps."""
    guards = state.add(GuardState(callbacks, state.settings))
    state.permission_check = holds_permission_quietly
    session_checks.init_app(app, state, guards)
