"""Logging in and out, ``login_required`` and the CSRF protection of the forms."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import func, select

from tests.bystander.helpers import Account, csrf_token, form_token, log_in
from tests.bystander.notes.models import Note


def test_login_page_renders_the_form_with_a_csrf_token(client: FlaskClient) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b'name="email"' in response.data
    assert b'name="password"' in response.data
    assert len(csrf_token(response)) > 20


def test_login_with_the_right_password_goes_to_the_notes(
    client: FlaskClient, alice: Account
) -> None:
    response = log_in(client, alice.email, alice.password)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"

    page = client.get("/")
    assert b"Welcome back, Alice." in page.data
    assert b"Your notes" in page.data
    assert b'href="/logout"' in page.data


def test_login_with_a_wrong_password_shows_an_error(client: FlaskClient, alice: Account) -> None:
    response = log_in(client, alice.email, "not-her-password")
    assert response.status_code == 200
    assert b"Wrong email or password." in response.data
    # Still anonymous: the protected page sends us to the form.
    assert client.get("/notes/new").status_code == 302


def test_login_form_rerenders_with_validation_errors(client: FlaskClient) -> None:
    token = form_token(client, "/login")
    response = client.post("/login", data={"email": "", "password": "", "csrf_token": token})
    assert response.status_code == 200
    assert b"Enter your email address." in response.data
    assert b"Enter your password." in response.data

    response = client.post(
        "/login", data={"email": "not-an-address", "password": "x", "csrf_token": token}
    )
    assert response.status_code == 200
    assert b"Enter a valid email address." in response.data
    assert b'value="not-an-address"' in response.data


def test_login_required_redirects_to_the_login_page(client: FlaskClient) -> None:
    response = client.get("/notes/new")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"next": ["/notes/new"]}

    page = client.get(response.headers["Location"])
    assert b"Please log in to see this page." in page.data


def test_login_returns_to_the_page_asked_for(client: FlaskClient, alice: Account) -> None:
    response = log_in(client, alice.email, alice.password, next_page="/profile")
    assert response.status_code == 302
    assert response.headers["Location"] == "/profile"


def test_login_ignores_a_next_page_on_another_site(client: FlaskClient, alice: Account) -> None:
    """An absolute ``next`` would make the login form an open redirect."""
    response = log_in(client, alice.email, alice.password, next_page="https://evil.example/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_logout_ends_the_session(client: FlaskClient, alice: Account) -> None:
    log_in(client, alice.email, alice.password)
    assert client.get("/notes/new").status_code == 200

    response = client.get("/logout", follow_redirects=True)
    assert response.status_code == 200
    assert b"You are logged out." in response.data
    assert b"Welcome to Notes" in response.data
    assert client.get("/notes/new").status_code == 302


def test_post_without_csrf_token_is_refused(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    """Flask-WTF refuses a form post without the token with its own 400."""
    response = client.post("/login", data={"email": alice.email, "password": alice.password})
    assert response.status_code == 400
    assert b"The CSRF token is missing." in response.data
    assert client.get("/notes/new").status_code == 302

    log_in(client, alice.email, alice.password)
    response = client.post("/notes/new", data={"title": "Sneaky", "body": ""})
    assert response.status_code == 400
    assert b"The CSRF token is missing." in response.data
    assert db.session.scalar(select(func.count()).select_from(Note)) == 0


def test_post_with_a_forged_csrf_token_is_refused(client: FlaskClient, alice: Account) -> None:
    client.get("/login")
    response = client.post(
        "/login",
        data={"email": alice.email, "password": alice.password, "csrf_token": "forged"},
    )
    assert response.status_code == 400
    assert b"The CSRF token is invalid." in response.data
