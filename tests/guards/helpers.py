"""Apps, users, a controllable clock and cookie helpers for the guard tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, session
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer

from flask_resilience import Resilience

SECRET = "a6f1c0d4e8b2937a5c6d0e1f2a3b4c5d6e7f8091a2b3c4d5"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
API = {"Accept": "application/json"}
# The configuration of every app of the guard tests, under the test's own.
GUARDS_CONFIG = {"SECRET_KEY": SECRET, "TESTING": True}


class Clock:
    """A time source the test moves by hand: ``guard_state(app).time_source = clock``."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class User:
    id: int
    permissions: set[str] = field(default_factory=set)
    roles: set[str] = field(default_factory=set)
    orgs: set[int] = field(default_factory=set)
    is_authenticated: bool = True

    def get_id(self) -> str:
        return str(self.id)


USERS = {
    1: User(1, {"documents:read", "documents:write"}, {"admin"}, {10}),
    2: User(2, {"documents:read"}, {"editor"}, {20}),
}


def app_with_users(**config: Any) -> tuple[Flask, Resilience]:
    """A test app whose guards know ``USERS``, and the extension on it (see ``add_users``)."""
    app = Flask(__name__)
    app.config.update(GUARDS_CONFIG)
    app.config.update(config)
    resilience = Resilience(app)
    add_users(app, resilience)
    return app, resilience


def add_users(app: Flask, resilience: Resilience) -> None:
    """Take the user from ``session["uid"]`` and the loaders' answers from ``USERS``.

    The app gets a ``/login`` page and ``/whoami``, which answers the session's keys.
    """

    @resilience.current_user_loader
    def load_user() -> User | None:
        uid = session.get("uid")
        return USERS.get(uid) if isinstance(uid, int) else None

    @resilience.permission_loader
    def load_permissions(user: User) -> set[str]:
        return user.permissions

    @resilience.role_loader
    def load_roles(user: User) -> set[str]:
        return user.roles

    @resilience.org_access_loader
    def can_enter(user: User, org_id: Any) -> bool:
        return int(org_id) in user.orgs

    @app.get("/login")
    def login() -> str:
        return "login page"

    @app.get("/whoami")
    def whoami() -> dict[str, Any]:
        return {key: value for key, value in session.items() if not key.startswith("_")}


def log_in(client: FlaskClient, uid: int, **extra: Any) -> None:
    with client.session_transaction() as sess:
        sess["uid"] = uid
        sess.update(extra)


def signed_cookie(app: Flask, data: Mapping[str, Any], *, secret: str | None = None) -> str:
    """A session cookie as Flask signs it, optionally with another key."""
    if secret is None:
        serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        return str(serializer.dumps(dict(data)))
    return raw_signed_cookie(data, secret=secret)


def raw_signed_cookie(data: Any, *, secret: str = SECRET) -> str:
    """Signed like a Flask session, but serialized as plain JSON, without Flask's tags."""
    serializer = URLSafeTimedSerializer(
        secret,
        salt="cookie-session",
        serializer=json,
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    )
    return str(serializer.dumps(data))


def problem(response: Any) -> dict[str, Any]:
    assert response.mimetype == "application/problem+json", response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json(force=True)
    return body


def cookie_deleted(response: Any, name: str = "session") -> bool:
    return any(
        header.startswith(f"{name}=;") and "Max-Age=0" in header
        for header in response.headers.getlist("Set-Cookie")
    )
