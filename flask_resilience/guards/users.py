"""Who the request's user is, and what the loaders say of them: failing closed.

Only a loader's clear "yes" opens a view: a permission loader returning an
iterable of names that covers the requirement, an organization loader returning
``True``. ``None``, a value of the wrong type or an exception is a "no" (403), logged
once with the request's context. A database that is down is neither: its error
goes on to the error handlers, which answer 503.

The user comes from the extension's ``current_user_loader`` when one is
registered, else from Flask-Login's ``current_user`` when Flask-Login is set up on
the app; it is looked up once per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, g, request, session

from .. import log
from ..log import ExtensionLogger, current_request_id
from .refusals import guard_state, is_outage

logger = ExtensionLogger("guards")

ORG_ID_SOURCES = ("view", "session", "query")


_UNRESOLVED: Any = object()


@dataclass
class _RequestGuards:
    """What the guards have looked up during one request, on ``g``."""

    user: Any = _UNRESOLVED
    names: dict[str, frozenset[str] | None] = field(default_factory=dict)


class _WrongType(Exception):
    """A loader answered something that is neither a yes nor a no."""


def _request_guards() -> _RequestGuards:
    cached: _RequestGuards | None = g.get("_resilience_guards")
    if cached is None:
        cached = _RequestGuards()
        g._resilience_guards = cached
    return cached


def current_user() -> Any | None:
    """The authenticated user of the current request, or ``None``.

    Anything that goes wrong while loading the user (other than the database being
    down) is logged and counts as no user.
    """
    cached = _request_guards()
    if cached.user is _UNRESOLVED:
        cached.user = _load_user()
    return cached.user


def _load_user() -> Any | None:
    loader = guard_state().callbacks.current_user_loader
    if loader is not None:
        source = "current_user_loader"
    elif hasattr(current_app, "login_manager"):
        source, loader = "Flask-Login's user loader", _flask_login_user
    else:
        return None
    try:
        user = current_app.ensure_sync(loader)()
        return user if _is_authenticated(user) else None
    except Exception as error:
        if is_outage(error):
            raise
        _log_failure(f"{source} raised {type(error).__name__}; the request is anonymous", error)
        return None


def _flask_login_user() -> Any:
    from flask_login import current_user as flask_login_user

    return flask_login_user._get_current_object()


def _is_authenticated(user: Any) -> bool:
    if user is None or user is False:
        return False
    return getattr(user, "is_authenticated", True) is True


def _log_failure(problem: str, error: Exception | None = None) -> None:
    """One record for the failure, with context; the 401/403 that follows is not logged again."""
    logger.error(
        "%s [request_id=%s endpoint=%s]",
        problem,
        current_request_id(),
        request.endpoint,
        exc_info=error,
    )
    log.request_state().logged = True
    if error is not None:
        error._resilience_logged = True  # type: ignore[attr-defined]


def _covers(granted: frozenset[str], required: tuple[str, ...], any_of: bool) -> bool:
    if any_of:
        return any(name in granted for name in required)
    return all(name in granted for name in required)


def granted(kind: str, user: Any) -> frozenset[str] | None:
    """The user's permission or role names, looked up once per request; ``None``: failed."""
    cached = _request_guards().names
    if kind not in cached:
        cached[kind] = _load_names(kind, user)
    return cached[kind]


def _load_names(kind: str, user: Any) -> frozenset[str] | None:
    guards = guard_state().callbacks
    loader = guards.permission_loader if kind == "permission" else guards.role_loader
    if loader is None:
        _log_failure(f"{kind}_required is used but no {kind}_loader is registered; access denied")
        return None
    try:
        return _as_names(current_app.ensure_sync(loader)(user))
    except _WrongType as wrong:
        _log_failure(f"The {kind}_loader returned {wrong}; access denied")
    except Exception as error:
        if is_outage(error):
            raise
        _log_failure(f"The {kind}_loader raised {type(error).__name__}; access denied", error)
    return None


def _as_names(result: Any) -> frozenset[str]:
    """The loader's answer as a set of names, or :class:`_WrongType`."""
    if (
        result is None
        or isinstance(result, (str, bytes, Mapping))
        or not isinstance(result, Iterable)
    ):
        # A string is iterable too: "admin" would grant "a", "d", "m"...
        raise _WrongType(f"{type(result).__name__}, not an iterable of names")
    names = set()
    for item in result:
        if not isinstance(item, str):
            raise _WrongType(f"an iterable holding {type(item).__name__}, not only names")
        names.add(item)
    return frozenset(names)


def _find_org_id(where: str, name: str, view_args: Mapping[str, Any]) -> Any:
    if where == "view":
        return view_args.get(name)
    if where == "session":
        return session.get(name)
    return request.args.get(name)


def org_access(user: Any, org_id: Any) -> bool:
    loader = guard_state().callbacks.org_access_loader
    if loader is None:
        _log_failure("org_access_required is used but no org_access_loader is registered")
        return False
    try:
        verdict = current_app.ensure_sync(loader)(user, org_id)
    except Exception as error:
        if is_outage(error):
            raise
        _log_failure(f"The org_access_loader raised {type(error).__name__}; access denied", error)
        return False
    if verdict is True or verdict is False:
        return verdict
    _log_failure(
        f"The org_access_loader returned {type(verdict).__name__}, not True or False; access denied"
    )
    return False


def has_permission(name: str) -> bool:
    """Whether the request's user holds the permission ``name``; no user, no loader or a
    failing loader means no."""
    user = current_user()
    if user is None:
        return False
    names = granted("permission", user)
    return names is not None and name in names


def holds_permission_quietly(name: str) -> bool:
    """:func:`has_permission`, but without a permission loader simply no, logging nothing:
    what health asks before it opens its internals to a user."""
    return guard_state().callbacks.permission_loader is not None and has_permission(name)
