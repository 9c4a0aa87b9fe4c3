"""Form login for the pages, HTTP Basic for the API, and what anonymous users get."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from .helpers import basic_auth, csrf_token_in, on_both_backends


def login_form(client: FlaskClient, path: str = "/login") -> str:
    return csrf_token_in(client.get(path).get_data(as_text=True))


def test_form_login_then_logout(client: FlaskClient) -> None:
    token = login_form(client)
    response = client.post(
        "/login",
        data={"email": "Alice@Acme.test ", "password": "alice-password", "csrf_token": token},
    )
    assert response.status_code == 302
    assert response.location == "/documents"
    assert client.get("/api/me").get_json()["email"] == "alice@acme.test"

    page = client.get("/documents").get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": csrf_token_in(page)})
    assert response.status_code == 302
    assert response.location == "/login"
    assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize(
    ("email", "password"),
    [("alice@acme.test", "wrong"), ("nobody@acme.test", "alice-password"), ("", "")],
)
def test_form_login_rejects_bad_credentials(client: FlaskClient, email: str, password: str) -> None:
    token = login_form(client)
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert response.status_code == 200
    assert "Unknown email address or wrong password." in response.get_data(as_text=True)
    assert client.get("/api/me").status_code == 401


def test_form_login_needs_the_csrf_token(client: FlaskClient) -> None:
    client.get("/login")
    response = client.post(
        "/login", data={"email": "alice@acme.test", "password": "alice-password"}
    )
    assert response.status_code == 400
    assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize(
    "sent", ["é", "\u00a0" * 43, "\U0001f600"], ids=["accent", "no-break spaces", "emoji"]
)
def test_a_csrf_token_with_other_than_ascii_characters_is_refused(
    client: FlaskClient, sent: str
) -> None:
    login_form(client)
    response = client.post(
        "/login",
        data={"email": "alice@acme.test", "password": "alice-password", "csrf_token": sent},
    )
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize("stored", [5, None, "", ["token"]])
def test_a_session_csrf_token_that_is_no_token_is_replaced(
    client: FlaskClient, stored: object
) -> None:
    # Signed with the app's own key, as a session from an older release would be.
    with client.session_transaction() as session:
        session["_csrf_token"] = stored
    assert client.post("/login", data={"csrf_token": str(stored)}).status_code == 400

    response = client.post(
        "/login",
        data={
            "email": "alice@acme.test",
            "password": "alice-password",
            "csrf_token": login_form(client),
        },
    )
    assert response.status_code == 302


def test_logout_needs_post_and_the_csrf_token(
    client: FlaskClient, login: Callable[..., None]
) -> None:
    login("alice@acme.test")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/api/me").status_code == 200


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/documents?page=2", "/documents?page=2"),
        ("https://evil.test/", "/documents"),
        ("//evil.test/", "/documents"),
        ("/\\evil.test/", "/documents"),
    ],
)
def test_login_redirects_only_within_the_site(
    client: FlaskClient, next_url: str, expected: str
) -> None:
    token = login_form(client)
    response = client.post(
        "/login",
        query_string={"next": next_url},
        data={"email": "bob@acme.test", "password": "bob-password", "csrf_token": token},
    )
    assert response.status_code == 302
    assert response.location == expected


def test_pages_send_anonymous_users_to_the_login_form(client: FlaskClient) -> None:
    response = client.get("/documents?page=2")
    assert response.status_code == 302
    assert response.location == "/login?next=/documents?page%3D2"
    assert client.get("/").location == "/documents"


@pytest.mark.parametrize("path", ["/api/me", "/api/documents", "/api/stats", "/api/outbound"])
def test_api_answers_anonymous_requests_with_401_json(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"
    assert response.get_json()["status"] == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Documents API"'


@on_both_backends
def test_basic_auth(client: FlaskClient) -> None:
    response = client.get("/api/me", headers=basic_auth("dave@globex.test"))
    assert response.status_code == 200
    assert response.get_json() == {
        "id": response.get_json()["id"],
        "email": "dave@globex.test",
        "role": "admin",
        "organization": {
            "id": response.get_json()["organization"]["id"],
            "name": "Globex",
            "slug": "globex",
        },
    }
    # Each API call authenticates on its own; no session cookie is handed out.
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        basic_auth("alice@acme.test", "bob-password"),
        basic_auth("mallory@acme.test", "x"),
        {"Authorization": "Bearer alice-password"},
    ],
)
def test_basic_auth_rejects_bad_credentials(client: FlaskClient, headers: dict[str, str]) -> None:
    assert client.get("/api/me", headers=headers).status_code == 401


@on_both_backends
@pytest.mark.parametrize("user_id", ["", "abc", "1.5", "\u0663", str(2**63), "9" * 5000])
def test_a_session_whose_user_id_names_nobody_is_anonymous(
    client: FlaskClient, user_id: str
) -> None:
    # Signed with the app's own key, as a session from an older release would be.
    with client.session_transaction() as session:
        session["_user_id"] = user_id

    assert client.get("/api/me").status_code == 401
    response = client.get("/documents")
    assert response.status_code == 302
    assert response.location.startswith("/login")
