"""Shared pieces for the example app's tests that are not fixtures."""

from __future__ import annotations

import base64
import re

import pytest
from flask.testing import FlaskClient

# Tests marked with this run once per database; PostgreSQL needs the server the
# top-level conftest's postgres_url fixture connects to.
on_both_backends = pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)

HEALTH_TOKEN = "test health token"
"""The app fixture's ``RESILIENCE_HEALTH_TOKEN``."""

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def basic_auth(email: str, password: str | None = None) -> dict[str, str]:
    """The Authorization header for a demo account (its password by default)."""
    password = password if password is not None else f"{email.split('@')[0]}-password"
    token = base64.b64encode(f"{email}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def csrf_token_in(html: str) -> str:
    """The CSRF token of the first form in a page, the way a browser would submit it."""
    match = _CSRF_FIELD.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def log_in(client: FlaskClient, email: str, password: str | None = None) -> str:
    """Log ``client`` in through the HTML form, as a browser would; the session's CSRF token.

    The token stays valid for the whole session: later forms of the same client post it.
    """
    password = password if password is not None else f"{email.split('@')[0]}-password"
    token = csrf_token_in(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert response.status_code == 302, "login failed"
    return token
