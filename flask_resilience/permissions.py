"""Permission, role and organization guards that fail closed.

Only a loader's clear "yes" opens a view: a permission loader returning an
iterable of names that covers the requirement, an organization loader returning
``True``. ``None``, a value of the wrong type or an exception is a "no" (403), logged
once with the request's context. A database that is down is neither: its error
goes on to the error handlers, which answer 503.

The user comes from the extension's ``user_loader`` when one is registered, else
from Flask-Login's ``current_user`` when Flask-Login is set up on the app; it is
looked up once per request.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar, cast, overload

from flask import current_app, g, request, session
from werkzeug.wrappers import Response

from . import access, log
from .errors import ConfigurationError
from .log import ExtensionLogger, current_request_id

P = ParamSpec("P")
R = TypeVar("R")

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
    loader = access.state().guards.user_loader
    if loader is not None:
        source = "user_loader"
    elif hasattr(current_app, "login_manager"):
        source, loader = "Flask-Login's user loader", _flask_login_user
    else:
        return None
    try:
        user = current_app.ensure_sync(loader)()
        return user if _is_authenticated(user) else None
    except Exception as error:
        if access.is_outage(error):
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


# -- Guards -----------------------------------------------------------------------------------

Check = Callable[[Any, Mapping[str, Any]], None]


def _guard(check: Check) -> access.ViewGuard:
    """A decorator that lets the view run only for an authenticated user ``check`` accepts.

    ``check`` raises the refusal itself; OPTIONS requests (CORS preflight) pass.
    """

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            if request.method not in access.EXEMPT_METHODS:
                user = current_user()
                if user is None:
                    return access.refuse_unauthenticated("login-required", "Log in to continue.")
                check(user, kwargs)
            return current_app.ensure_sync(view)(*args, **kwargs)  # type: ignore[no-any-return]

        return wrapper

    return cast(access.ViewGuard, decorate)


@overload
def login_required(view: Callable[P, Awaitable[R]]) -> Callable[P, R | Response]: ...


@overload
def login_required(view: Callable[P, R]) -> Callable[P, R | Response]: ...


def login_required(view: Callable[P, Any]) -> Callable[P, Any]:
    """Answer 401 (or redirect a browser to the login view) unless a user is logged in.

    ::

        @app.get("/api/me")
        @login_required
        def me(): ...
    """
    return _guard(lambda _user, _kwargs: None)(view)


def permission_required(*names: str, any_of: bool = False) -> access.ViewGuard:
    """Let the view run only for a user with every one of ``names`` (any one: ``any_of``).

    ::

        @app.post("/api/documents")
        @permission_required("documents:write")
        def create_document(): ...

    The user's permissions come from the ``permission_loader``.

    :raises ConfigurationError: no names (which would allow everyone), or a name
        that is not a non-empty string; raised when the decorator is applied.
    """
    required = access.required_names("permission_required", names)
    return _guard(_names_check("permission", required, any_of))


def role_required(*roles: str, any_of: bool = False) -> access.ViewGuard:
    """Let the view run only for a user with every one of ``roles`` (any one: ``any_of``).

    ::

        @app.get("/admin")
        @role_required("admin")
        def admin(): ...

    The user's roles come from the ``role_loader``.

    :raises ConfigurationError: no roles, or a role that is not a non-empty string.
    """
    required = access.required_names("role_required", roles)
    return _guard(_names_check("role", required, any_of))


def _names_check(kind: str, required: tuple[str, ...], any_of: bool) -> Check:
    def check(user: Any, _kwargs: Mapping[str, Any]) -> None:
        granted = _granted(kind, user)
        if granted is None or not _covers(granted, required, any_of):
            access.refuse_forbidden(
                user, kind, f"You do not have the {kind} this needs.", required=required
            )

    return check


def _covers(granted: frozenset[str], required: tuple[str, ...], any_of: bool) -> bool:
    if any_of:
        return any(name in granted for name in required)
    return all(name in granted for name in required)


def _granted(kind: str, user: Any) -> frozenset[str] | None:
    """The user's permission or role names, looked up once per request; ``None``: failed."""
    cached = _request_guards().names
    if kind not in cached:
        cached[kind] = _load_names(kind, user)
    return cached[kind]


def _load_names(kind: str, user: Any) -> frozenset[str] | None:
    guards = access.state().guards
    loader = guards.permission_loader if kind == "permission" else guards.role_loader
    if loader is None:
        _log_failure(f"{kind}_required is used but no {kind}_loader is registered; access denied")
        return None
    try:
        return _as_names(current_app.ensure_sync(loader)(user))
    except _WrongType as wrong:
        _log_failure(f"The {kind}_loader returned {wrong}; access denied")
    except Exception as error:
        if access.is_outage(error):
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


def org_access_required(
    org_id_arg: str = "org_id", *, source: str | None = None
) -> access.ViewGuard:
    """Let the view run only for a user the ``org_access_loader`` lets into the organization.

    ::

        @app.get("/api/orgs/<int:org_id>/invoices")
        @org_access_required()
        def invoices(org_id): ...

        @app.get("/dashboard")
        @org_access_required("current_org", source="session")
        def dashboard(): ...

    :param org_id_arg: the name of the organization id: a view argument, a session
        key or a query parameter.
    :param source: ``"view"``, ``"session"`` or ``"query"``; by default
        ``RESILIENCE_ORG_ID_SOURCE``. No id there is a 403.
    :raises ConfigurationError: an empty ``org_id_arg`` or an unknown ``source``.
    """
    if not isinstance(org_id_arg, str) or not org_id_arg:
        raise ConfigurationError(
            f"org_access_required() got org_id_arg={org_id_arg!r}; expected a non-empty name."
        )
    if source is not None and source not in ORG_ID_SOURCES:
        raise ConfigurationError(
            f"org_access_required() got source={source!r}; expected one of"
            f" {', '.join(ORG_ID_SOURCES)} or None."
        )

    def check(user: Any, view_args: Mapping[str, Any]) -> None:
        where = source or access.state().config["RESILIENCE_ORG_ID_SOURCE"]
        org_id = _find_org_id(where, org_id_arg, view_args)
        if org_id is None or org_id == "":
            access.refuse_forbidden(
                user, "organization", "No organization was given.", required=(org_id_arg,)
            )
        if not _org_access(user, org_id):
            access.refuse_forbidden(
                user,
                "organization",
                "You do not have access to this organization.",
                required=(org_id_arg,),
                org_id=org_id,
            )

    return _guard(check)


def _find_org_id(where: str, name: str, view_args: Mapping[str, Any]) -> Any:
    if where == "view":
        return view_args.get(name)
    if where == "session":
        return session.get(name)
    return request.args.get(name)


def _org_access(user: Any, org_id: Any) -> bool:
    loader = access.state().guards.org_access_loader
    if loader is None:
        _log_failure("org_access_required is used but no org_access_loader is registered")
        return False
    try:
        verdict = current_app.ensure_sync(loader)(user, org_id)
    except Exception as error:
        if access.is_outage(error):
            raise
        _log_failure(f"The org_access_loader raised {type(error).__name__}; access denied", error)
        return False
    if verdict is True or verdict is False:
        return verdict
    _log_failure(
        f"The org_access_loader returned {type(verdict).__name__}, not True or False; access denied"
    )
    return False
