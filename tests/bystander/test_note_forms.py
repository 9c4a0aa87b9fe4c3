"""The note form: rendering, validation and saving."""

from __future__ import annotations

from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import select

from tests.bystander.helpers import Account, add_note, csrf_token, form_token, log_in
from tests.bystander.notes.models import Note


def test_new_note_form_renders(client: FlaskClient, alice: Account) -> None:
    log_in(client, alice.email, alice.password)
    response = client.get("/notes/new")
    assert response.status_code == 200
    assert b"<h1>New note</h1>" in response.data
    assert b'name="title"' in response.data
    assert b"<textarea" in response.data
    assert csrf_token(response)


def test_new_note_is_saved_and_shown(client: FlaskClient, alice: Account, db: SQLAlchemy) -> None:
    log_in(client, alice.email, alice.password)
    token = form_token(client, "/notes/new")

    response = client.post(
        "/notes/new", data={"title": "  Groceries ", "body": "Milk", "csrf_token": token}
    )
    assert response.status_code == 302
    note = db.session.scalars(select(Note)).one()
    assert (note.title, note.body, note.author_id) == ("Groceries", "Milk", alice.id)
    assert response.headers["Location"] == f"/notes/{note.id}"

    page = client.get(response.headers["Location"])
    assert b"Note saved." in page.data
    assert b"<h1>Groceries</h1>" in page.data


def test_new_note_without_title_rerenders_with_error(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    log_in(client, alice.email, alice.password)
    token = form_token(client, "/notes/new")

    response = client.post("/notes/new", data={"title": "", "body": "kept", "csrf_token": token})
    assert response.status_code == 200
    assert b"A note needs a title." in response.data
    assert b"kept</textarea>" in response.data
    assert db.session.scalars(select(Note)).all() == []


def test_new_note_with_too_long_title_rerenders_with_error(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    log_in(client, alice.email, alice.password)
    token = form_token(client, "/notes/new")

    response = client.post("/notes/new", data={"title": "x" * 121, "csrf_token": token})
    assert response.status_code == 200
    assert b"Keep the title under 120 characters." in response.data
    assert db.session.scalars(select(Note)).all() == []


def test_edit_form_is_prefilled_and_saves(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    note_id = add_note(alice, "Draft", "first version")
    log_in(client, alice.email, alice.password)

    page = client.get(f"/notes/{note_id}/edit")
    assert page.status_code == 200
    assert b'value="Draft"' in page.data
    assert b"first version</textarea>" in page.data

    response = client.post(
        f"/notes/{note_id}/edit",
        data={"title": "Final", "body": "second version", "csrf_token": csrf_token(page)},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/notes/{note_id}"
    saved = db.session.execute(select(Note.title, Note.body).where(Note.id == note_id)).one()
    assert tuple(saved) == ("Final", "second version")
