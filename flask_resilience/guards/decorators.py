"""The guards as view decorators, failing closed; ``OPTIONS`` (a CORS preflight) passes."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast, overload

from flask import current_app, request
from werkzeug.wrappers import Response

from ..errors import ConfigurationError
from .refusals import (
    EXEMPT_METHODS,
    ViewGuard,
    guard_state,
    refuse_forbidden,
    refuse_unauthenticated,
    required_names,
)
from .session_checks import holds
from .users import ORG_ID_SOURCES, _covers, _find_org_id, current_user, granted, org_access

P = ParamSpec("P")
R = TypeVar("R")

Check = Callable[[Any, Mapping[str, Any]], None]


def _guard(check: Check) -> ViewGuard:
    """A decorator that lets the view run only for an authenticated user ``check`` accepts.

    ``check`` raises the refusal itself; OPTIONS requests (CORS preflight) pass.
    """

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            if request.method not in EXEMPT_METHODS:
                user = current_user()
                if user is None:
                    return refuse_unauthenticated("login-required", "Log in to continue.")
                check(user, kwargs)
            return current_app.ensure_sync(view)(*args, **kwargs)  # type: ignore[no-any-return]

        return wrapper

    return cast(ViewGuard, decorate)


@overload
def authentication_required(view: Callable[P, Awaitable[R]]) -> Callable[P, R | Response]: ...


@overload
def authentication_required(view: Callable[P, R]) -> Callable[P, R | Response]: ...


def authentication_required(view: Callable[P, Any]) -> Callable[P, Any]:
    """Answer 401 (or redirect a browser to the login view) unless a user is logged in.

    ::

        @app.get("/api/me")
        @authentication_required
        def me(): ...
    """
    return _guard(lambda _user, _kwargs: None)(view)


def permission_required(*names: str, any_of: bool = False) -> ViewGuard:
    """Let the view run only for a user with every one of ``names`` (any one: ``any_of``).

    ::

        @app.post("/api/documents")
        @permission_required("documents:write")
        def create_document(): ...

    The user's permissions come from the ``permission_loader``.

    :raises ConfigurationError: no names (which would allow everyone), or a name
        that is not a non-empty string; raised when the decorator is applied.
    """
    required = required_names("permission_required", names)
    return _guard(_names_check("permission", required, any_of))


def role_required(*roles: str, any_of: bool = False) -> ViewGuard:
    """Let the view run only for a user with every one of ``roles`` (any one: ``any_of``).

    ::

        @app.get("/admin")
        @role_required("admin")
        def admin(): ...

    The user's roles come from the ``role_loader``.

    :raises ConfigurationError: no roles, or a role that is not a non-empty string.
    """
    required = required_names("role_required", roles)
    return _guard(_names_check("role", required, any_of))


def _names_check(kind: str, required: tuple[str, ...], any_of: bool) -> Check:
    def check(user: Any, _kwargs: Mapping[str, Any]) -> None:
        names = granted(kind, user)
        if names is None or not _covers(names, required, any_of):
            refuse_forbidden(
                user, kind, f"You do not have the {kind} this needs.", required=required
            )

    return check


def org_access_required(org_id_arg: str = "org_id", *, source: str | None = None) -> ViewGuard:
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
        where = source or guard_state().settings.org_id_source
        org_id = _find_org_id(where, org_id_arg, view_args)
        if org_id is None or org_id == "":
            refuse_forbidden(
                user, "organization", "No organization was given.", required=(org_id_arg,)
            )
        if not org_access(user, org_id):
            refuse_forbidden(
                user,
                "organization",
                "You do not have access to this organization.",
                required=(org_id_arg,),
                org_id=org_id,
            )

    return _guard(check)


def session_required(*keys: str) -> ViewGuard:
    """Answer 401 (or redirect a browser to the login view) unless the session holds ``keys``.

    ::

        @app.get("/api/org/settings")
        @session_required("org_id")
        def org_settings(): ...

    A key must be present, not ``None`` and, when ``RESILIENCE_SESSION_SCHEMA``
    lists it, of its type.

    :raises ConfigurationError: no keys, or a key that is not a non-empty string.
    """
    required = required_names("session_required", keys)

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            if request.method not in EXEMPT_METHODS and not holds(required):
                return refuse_unauthenticated(
                    "session-required",
                    "This needs a session that holds " + ", ".join(required) + ".",
                    required=required,
                )
            return current_app.ensure_sync(view)(*args, **kwargs)  # type: ignore[no-any-return]

        return wrapper

    return cast(ViewGuard, decorate)
