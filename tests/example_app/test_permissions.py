"""Who may do what: each role against each guarded endpoint, and the health internals."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from example_app.models import Role
from example_app.permissions import ROLE_PERMISSIONS

from .helpers import HEALTH_TOKEN, basic_auth


def status(client: FlaskClient, email: str, method: str, path: str) -> int:
    data = {"file": (io.BytesIO(b"notes\n"), "notes.txt")} if method == "POST" else None
    response = client.open(path, method=method, headers=basic_auth(email), data=data)
    return response.status_code


@pytest.mark.parametrize(
    ("method", "path", "admin", "member", "viewer"),
    [
        ("GET", "/api/documents", 200, 200, 200),
        ("POST", "/api/documents", 201, 201, 403),
        ("GET", "/api/stats", 200, 200, 200),
        ("GET", "/api/orgs/1/documents", 200, 200, 200),
        ("GET", "/health/detailed", 200, 401, 401),
        ("GET", "/health/metrics", 200, 401, 401),
    ],
)
def test_each_role(
    client: FlaskClient, method: str, path: str, admin: int, member: int, viewer: int
) -> None:
    # Acme is organization 1: the accounts are created in that order.
    assert status(client, "alice@acme.test", method, path) == admin
    assert status(client, "bob@acme.test", method, path) == member
    assert status(client, "carol@acme.test", method, path) == viewer


def test_every_role_has_permissions() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    # Each role can do less than the one above it.
    assert ROLE_PERMISSIONS[Role.VIEWER] < ROLE_PERMISSIONS[Role.MEMBER]
    assert ROLE_PERMISSIONS[Role.MEMBER] < ROLE_PERMISSIONS[Role.ADMIN]


def test_preflight_passes_the_guards(client: FlaskClient) -> None:
    # CORS preflights carry no credentials; Flask answers them.
    response = client.options("/api/documents", headers=basic_auth("carol@acme.test"))
    assert response.status_code == 200
    assert "POST" in response.headers["Allow"]


def test_health_details_for_an_admin_over_basic_auth(client: FlaskClient) -> None:
    # What the README tells demo users to run with curl -u.
    response = client.get("/health/detailed", headers=basic_auth("alice@acme.test"))

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] in {"pass", "warn"}
    assert "database:responseTime" in body["checks"]


def test_health_details_for_others_need_the_token(client: FlaskClient) -> None:
    refused = client.get("/health/detailed", headers=basic_auth("bob@acme.test"))
    assert refused.status_code == 401
    assert refused.content_type == "application/problem+json"
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="health"'

    response = client.get("/health/detailed", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"})
    assert response.status_code == 200
    wrong = client.get("/health/detailed", headers={"Authorization": "Bearer guessed"})
    assert wrong.status_code == 401


def test_health_dashboard_for_a_logged_in_admin(
    client: FlaskClient, login: Callable[..., None]
) -> None:
    assert client.get("/health/dashboard").status_code == 401
    login("alice@acme.test")
    assert client.get("/health/dashboard").status_code == 200
    assert client.get("/health/detailed").status_code == 200


def test_public_health_endpoints_need_nobody(client: FlaskClient) -> None:
    for path in ("/health", "/health/live", "/health/ready"):
        assert client.get(path).status_code == 200, path
