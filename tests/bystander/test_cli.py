"""``flask create-user``."""

from __future__ import annotations

from flask.testing import FlaskClient, FlaskCliRunner
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import select

from tests.bystander.helpers import Account, log_in
from tests.bystander.notes.models import User


def test_create_user_makes_an_account_that_can_log_in(
    runner: FlaskCliRunner, client: FlaskClient, db: SQLAlchemy
) -> None:
    result = runner.invoke(
        args=["create-user", "Carol@Example.org", "Carol", "--password", "carol-pw-123"]
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalars(select(User)).one()
    assert (user.email, user.name) == ("carol@example.org", "Carol")
    assert result.output == f"Created user {user.id} <carol@example.org>.\n"

    response = log_in(client, "carol@example.org", "carol-pw-123")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_create_user_refuses_a_taken_email(
    runner: FlaskCliRunner, alice: Account, db: SQLAlchemy
) -> None:
    result = runner.invoke(args=["create-user", alice.email, "Other", "--password", "x"])
    assert result.exit_code == 1
    assert f"A user with the email {alice.email} exists already." in result.output
    assert len(db.session.scalars(select(User)).all()) == 1
