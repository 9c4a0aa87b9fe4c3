"""Test helpers: accounts and notes made directly in the database, and what a
browser does (read a form's CSRF token, log in)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.bystander.notes.extensions import db
from tests.bystander.notes.models import Note, User

_CSRF_INPUT = re.compile(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"')


@dataclass(frozen=True)
class Account:
    """A user's credentials and id, kept as plain values: they outlive any session."""

    id: int
    email: str
    name: str
    password: str


def add_user(email: str, name: str, password: str) -> Account:
    user = User(email=email, name=name)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return Account(user.id, email, name, password)


def add_note(account: Account, title: str, body: str = "") -> int:
    note = Note(title=title, body=body, author_id=account.id)
    db.session.add(note)
    db.session.commit()
    return note.id


def csrf_token(page: TestResponse) -> str:
    """The hidden CSRF field's value in a rendered form, as a browser would send it."""
    match = _CSRF_INPUT.search(page.get_data(as_text=True))
    assert match is not None, "the page has no csrf_token field"
    return match.group(1)


def log_in(
    client: FlaskClient, email: str, password: str, *, next_page: str | None = None
) -> TestResponse:
    """Fill in and submit the login form; the answer is not followed."""
    query = {"next": next_page} if next_page else {}
    page = client.get("/login", query_string=query)
    assert page.status_code == 200
    return client.post(
        "/login",
        query_string=query,
        data={"email": email, "password": password, "csrf_token": csrf_token(page)},
    )


def form_token(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form at ``path``."""
    page = client.get(path)
    assert page.status_code == 200, page.status
    return csrf_token(page)


def read_log(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""
