"""Attempts to log in are limited: through the form, and wrong credentials over Basic auth."""

from __future__ import annotations

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from .helpers import basic_auth, csrf_token_in

ATTEMPTS_PER_MINUTE = 10


def post_login(client: FlaskClient, token: str, password: str) -> TestResponse:
    return client.post(
        "/login", data={"email": "alice@acme.test", "password": password, "csrf_token": token}
    )


def assert_rate_limited(response: TestResponse) -> None:
    assert response.status_code == 429
    assert response.content_type == "application/problem+json"
    assert response.get_json()["status"] == 429
    assert response.get_json()["limit"] == "10 per 1 minute"
    assert 0 < int(response.headers["Retry-After"]) <= 60


def test_the_eleventh_login_attempt_in_a_minute_is_refused(client: FlaskClient) -> None:
    token = csrf_token_in(client.get("/login").get_data(as_text=True))
    for _ in range(ATTEMPTS_PER_MINUTE):
        assert post_login(client, token, "guess").status_code == 200

    refused = post_login(client, token, "alice-password")  # even the right password

    assert_rate_limited(refused)
    assert client.get("/api/me").status_code == 401
    # Only attempts count: the form itself is still served.
    assert client.get("/login").status_code == 200


def test_posts_without_the_csrf_token_check_no_password_and_do_not_count(
    client: FlaskClient,
) -> None:
    token = csrf_token_in(client.get("/login").get_data(as_text=True))
    for _ in range(2 * ATTEMPTS_PER_MINUTE):
        assert post_login(client, "forged", "guess").status_code == 400

    assert post_login(client, token, "alice-password").status_code == 302


def test_wrong_basic_auth_credentials_are_limited(client: FlaskClient) -> None:
    alice = basic_auth("alice@acme.test")
    # Scripts authenticate on every call; successful calls never count.
    for _ in range(2 * ATTEMPTS_PER_MINUTE):
        assert client.get("/api/me", headers=alice).status_code == 200
    # Nor do calls without credentials.
    for _ in range(ATTEMPTS_PER_MINUTE):
        assert client.get("/api/me").status_code == 401

    wrong = basic_auth("alice@acme.test", "guess")
    for number in range(ATTEMPTS_PER_MINUTE):
        assert client.get(f"/api/documents?page={number}", headers=wrong).status_code == 401

    # Counted across the whole API, and then the right password waits too.
    assert_rate_limited(client.get("/api/me", headers=alice))
    assert_rate_limited(client.get("/api/stats", headers=wrong))
    # Health probes are never limited.
    assert client.get("/health/ready").status_code == 200
