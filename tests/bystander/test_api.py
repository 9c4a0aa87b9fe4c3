"""The JSON API: CRUD on notes, and errors in the API's own JSON shape."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import select

from tests.bystander.helpers import Account, add_note, log_in, read_log
from tests.bystander.notes.models import Note


def test_api_needs_a_logged_in_user(client: FlaskClient) -> None:
    """The blueprint's before_request raises a domain error that its handler answers."""
    response = client.get("/api/notes")
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "error": {"code": "not_authenticated", "message": "Log in to use the API."}
    }


def test_api_lists_own_notes(client: FlaskClient, alice: Account, bob: Account) -> None:
    first = add_note(alice, "First", "a")
    second = add_note(alice, "Second", "b")
    add_note(bob, "Not yours")
    log_in(client, alice.email, alice.password)

    response = client.get("/api/notes")
    assert response.status_code == 200
    body = response.get_json()
    assert body["count"] == 2
    assert [(n["id"], n["title"], n["body"]) for n in body["notes"]] == [
        (first, "First", "a"),
        (second, "Second", "b"),
    ]


def test_api_creates_a_note(client: FlaskClient, alice: Account, db: SQLAlchemy) -> None:
    log_in(client, alice.email, alice.password)

    response = client.post("/api/notes", json={"title": " Call mum ", "body": "Sunday"})
    assert response.status_code == 201
    created = response.get_json()
    assert created["title"] == "Call mum"
    assert created["author_id"] == alice.id
    assert response.headers["Location"] == f"/api/notes/{created['id']}"
    stored = db.session.execute(select(Note.title, Note.body)).one()
    assert tuple(stored) == ("Call mum", "Sunday")

    assert client.get(response.headers["Location"]).get_json() == created


def test_api_rejects_an_invalid_note_with_its_own_error(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    log_in(client, alice.email, alice.password)

    response = client.post("/api/notes", json={"title": "   ", "body": 7})
    assert response.status_code == 422
    assert response.get_json() == {
        "error": {
            "code": "validation_failed",
            "message": "Some fields are not valid.",
            "fields": {"title": "Must not be blank.", "body": "Must be a string."},
        }
    }
    assert db.session.scalars(select(Note)).all() == []


def test_api_missing_note_is_the_domain_not_found(client: FlaskClient, alice: Account) -> None:
    log_in(client, alice.email, alice.password)

    response = client.get("/api/notes/999")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "error": {"code": "note_not_found", "message": "There is no note 999.", "note_id": 999}
    }


def test_api_someone_elses_note_is_not_found(
    client: FlaskClient, alice: Account, bob: Account
) -> None:
    note_id = add_note(bob, "Bob only")
    log_in(client, alice.email, alice.password)

    response = client.get(f"/api/notes/{note_id}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "note_not_found"
    assert client.patch(f"/api/notes/{note_id}", json={"title": "Mine"}).status_code == 404


def test_api_updates_a_note(client: FlaskClient, alice: Account, db: SQLAlchemy) -> None:
    note_id = add_note(alice, "Old title", "old body")
    log_in(client, alice.email, alice.password)

    response = client.patch(f"/api/notes/{note_id}", json={"title": "New title"})
    assert response.status_code == 200
    assert response.get_json()["title"] == "New title"
    assert response.get_json()["body"] == "old body"
    assert db.session.scalar(select(Note.title).where(Note.id == note_id)) == "New title"


def test_api_deletes_a_note_and_logs_it(
    client: FlaskClient, alice: Account, db: SQLAlchemy, log_file: Path
) -> None:
    """Deletions are audited in the log, with structured fields for the shipper."""
    note_id = add_note(alice, "Temporary")
    log_in(client, alice.email, alice.password)

    response = client.delete(f"/api/notes/{note_id}")
    assert response.status_code == 204
    assert response.data == b""
    assert db.session.scalar(select(Note.id).where(Note.id == note_id)) is None
    assert client.get(f"/api/notes/{note_id}").status_code == 404
    assert f"Note {note_id} deleted by user {alice.id}" in read_log(log_file)


def test_api_malformed_json_is_a_json_400(client: FlaskClient, alice: Account) -> None:
    """Flask's BadRequest goes through the blueprint's HTTPException handler."""
    log_in(client, alice.email, alice.password)

    response = client.post(
        "/api/notes", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "bad_request"


def test_api_unknown_address_is_a_json_404(client: FlaskClient, alice: Account) -> None:
    """No blueprint matched, so the app's 404 handler answers in the API's shape."""
    log_in(client, alice.email, alice.password)

    response = client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.get_json() == {
        "error": {"code": "not_found", "message": "There is nothing at this address."}
    }


def test_api_serves_many_requests_in_a_row(client: FlaskClient, alice: Account) -> None:
    """The mobile client polls; the app sets no rate limit, so none may refuse it."""
    add_note(alice, "Polled")
    log_in(client, alice.email, alice.password)

    statuses = [client.get("/api/notes").status_code for _ in range(150)]
    refused = [number for number, status in enumerate(statuses, 1) if status != 200]
    assert refused == [], f"{len(refused)} of 150 refused, the first at request {refused[0]}"
