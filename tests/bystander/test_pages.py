"""The HTML pages and the app's own error pages."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.bystander.helpers import Account, add_note, log_in


def test_index_welcomes_anonymous_visitors(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert b"Welcome to Notes" in response.data
    assert b'href="/login"' in response.data


def test_index_lists_only_own_notes(client: FlaskClient, alice: Account, bob: Account) -> None:
    add_note(alice, "Alice's shopping list")
    add_note(bob, "Bob's secret plan")
    log_in(client, alice.email, alice.password)

    response = client.get("/")
    assert response.status_code == 200
    assert b"Your notes" in response.data
    assert b"Alice&#39;s shopping list" in response.data
    assert b"Bob&#39;s secret plan" not in response.data


def test_note_page_shows_the_note(client: FlaskClient, alice: Account) -> None:
    note_id = add_note(alice, "Recipe", "Two eggs, one cup of flour.")
    log_in(client, alice.email, alice.password)

    response = client.get(f"/notes/{note_id}")
    assert response.status_code == 200
    assert b"<h1>Recipe</h1>" in response.data
    assert b"Two eggs, one cup of flour." in response.data


def test_someone_elses_note_is_forbidden(client: FlaskClient, alice: Account, bob: Account) -> None:
    note_id = add_note(bob, "Bob's diary")
    log_in(client, alice.email, alice.password)

    response = client.get(f"/notes/{note_id}")
    assert response.status_code == 403
    assert b"Bob&#39;s diary" not in response.data


def test_missing_note_is_the_apps_404_page(client: FlaskClient, alice: Account) -> None:
    """A missing row is the app's own page, not a bare error."""
    log_in(client, alice.email, alice.password)

    response = client.get("/notes/4242")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert b'id="notes-404"' in response.data
    # The app's page is the whole page: the navigation knows who is logged in.
    assert b"Alice" in response.data


def test_unknown_address_is_the_apps_404_page(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert b"<h1>Page not found</h1>" in response.data
    assert b'id="notes-404"' in response.data


def test_wrong_method_is_405_with_allow_header(client: FlaskClient) -> None:
    """The app has no 405 page: Flask's answer, with the methods the URL takes."""
    response = client.delete("/")
    assert response.status_code == 405
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "HEAD"} <= allowed
    assert "DELETE" not in allowed


def test_health_is_the_apps_own_endpoint(client: FlaskClient) -> None:
    """The load balancer polls this path and reads this body."""
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_profile_shows_name_and_note_count(client: FlaskClient, alice: Account) -> None:
    """The page reads the logged-in user's relationship (``current_user.notes``)."""
    add_note(alice, "One")
    add_note(alice, "Two")
    log_in(client, alice.email, alice.password)

    response = client.get("/profile")
    assert response.status_code == 200
    assert b"<h1>Alice</h1>" in response.data
    assert b'<dd class="note-count">2</dd>' in response.data
