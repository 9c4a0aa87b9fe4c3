"""The session, the long-lived test context and the ``last_seen`` hook.

The test's request context stays pushed while the client makes its requests, so
the test and the requests share one app context and so one ``db.session``: an
object the test loaded is the object the views see.
"""

from __future__ import annotations

from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import func, select

from tests.bystander.helpers import Account, add_note, log_in
from tests.bystander.notes.models import Note, User, utcnow


def test_objects_loaded_in_the_test_stay_usable_after_requests(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    """A user loaded before the requests still lazy-loads its notes after them."""
    add_note(alice, "Kept")
    user = db.session.get(User, alice.id)
    assert user is not None

    log_in(client, alice.email, alice.password)
    assert client.get("/").status_code == 200

    assert user.name == "Alice"
    assert [note.title for note in user.notes] == ["Kept"]


def test_object_refreshes_after_a_request_changed_it(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    """``refresh`` needs the object to still belong to the session."""
    note_id = add_note(alice, "Before")
    note = db.session.get(Note, note_id)
    assert note is not None
    log_in(client, alice.email, alice.password)

    assert client.patch(f"/api/notes/{note_id}", json={"title": "After"}).status_code == 200
    db.session.refresh(note)
    assert note.title == "After"


def test_queries_in_the_test_context_between_requests(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    """The test and the API write in turns; each sees the other's rows."""
    log_in(client, alice.email, alice.password)

    for round_ in range(5):
        db.session.add(Note(title=f"From the test {round_}", author_id=alice.id))
        db.session.commit()
        response = client.post("/api/notes", json={"title": f"From the API {round_}"})
        assert response.status_code == 201
        assert db.session.scalar(select(func.count()).select_from(Note)) == 2 * (round_ + 1)

    titles = db.session.scalars(select(Note.title).order_by(Note.id)).all()
    assert titles[:2] == ["From the test 0", "From the API 0"]
    assert client.get("/api/notes").get_json()["count"] == 10


def test_last_seen_hook_runs_once_per_request(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    """Each request by a logged-in user counts one visit, no more, no less."""
    log_in(client, alice.email, alice.password)
    started = utcnow()
    visits_before = db.session.scalar(select(User.visits).where(User.id == alice.id))
    # The login's own requests came from an anonymous visitor.
    assert visits_before == 0

    for path in ("/", "/notes/new", "/api/notes", "/health", "/no/such/page"):
        client.get(path)

    visits, last_seen = db.session.execute(
        select(User.visits, User.last_seen).where(User.id == alice.id)
    ).one()
    assert visits == 5
    assert last_seen is not None
    assert last_seen >= started


def test_last_seen_is_left_alone_for_anonymous_visitors(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    """The hook only touches a logged-in user."""
    for path in ("/", "/login", "/health", "/api/notes"):
        client.get(path)

    row = db.session.execute(select(User.visits, User.last_seen).where(User.id == alice.id)).one()
    assert tuple(row) == (0, None)


def test_test_context_session_is_the_requests_session(
    client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    """What a request committed is in the test's identity map, not a second copy."""
    log_in(client, alice.email, alice.password)
    user = db.session.get(User, alice.id)

    response = client.post("/api/notes", json={"title": "Shared"})
    assert response.status_code == 201
    note = db.session.get(Note, response.get_json()["id"])
    assert note is not None
    assert note.author is user
