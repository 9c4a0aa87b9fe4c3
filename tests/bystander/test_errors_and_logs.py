"""The app's 500 page and its log file, for crashes and SQL errors alike.

Flask propagates exceptions under ``TESTING``; the tests of the error page turn
that off, as the app runs in production.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import func, select

from tests.bystander.helpers import Account, log_in, read_log
from tests.bystander.notes.models import User

TRACEBACK = "Traceback (most recent call last):"


def test_crash_reaches_the_test_while_testing(client: FlaskClient) -> None:
    """Under TESTING, Flask re-raises: a crash fails the test that caused it."""
    with pytest.raises(RuntimeError, match="Boom: this page fails on purpose"):
        client.get("/boom")


def test_crash_shows_the_apps_500_page(app: Flask, client: FlaskClient) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    response = client.get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    assert b"<h1>Something went wrong</h1>" in response.data
    assert b'id="notes-500"' in response.data
    assert b"Boom" not in response.data


def test_crash_is_logged_once_with_its_traceback(
    app: Flask, client: FlaskClient, log_file: Path
) -> None:
    """Flask logs the crash on ``app.logger``, whose file handler the factory set up."""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    client.get("/boom")
    log = read_log(log_file)
    assert log.count(f"ERROR {app.logger.name}: Exception on /boom [GET]") == 1
    assert log.count(TRACEBACK) == 1
    assert log.count("RuntimeError: Boom: this page fails on purpose.") == 1
    assert 'in boom\n    raise RuntimeError("Boom: this page fails on purpose.")' in log


def test_sql_error_shows_the_apps_500_page(app: Flask, client: FlaskClient) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    response = client.get("/broken-query")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    assert b'id="notes-500"' in response.data
    assert b"no_such_table" not in response.data


def test_sql_error_is_logged_once_with_its_traceback(
    app: Flask, client: FlaskClient, log_file: Path
) -> None:
    """A bad query is a bug like any crash: logged by Flask with its traceback."""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    client.get("/broken-query")
    log = read_log(log_file)
    assert log.count(f"ERROR {app.logger.name}: Exception on /broken-query [GET]") == 1
    assert TRACEBACK in log
    assert "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) no such table" in log
    assert "[SQL: SELECT * FROM no_such_table]" in log


def test_requests_after_errors_still_work(
    app: Flask, client: FlaskClient, alice: Account, db: SQLAlchemy
) -> None:
    """The 500 handler rolled back: later requests and the test's session work."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    log_in(client, alice.email, alice.password)

    assert client.get("/broken-query").status_code == 500
    assert client.get("/boom").status_code == 500
    page = client.get("/")
    assert page.status_code == 200
    assert b"Your notes" in page.data
    assert client.post("/api/notes", json={"title": "After the errors"}).status_code == 201
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_app_and_module_loggers_write_to_the_file(
    app: Flask, client: FlaskClient, alice: Account, log_file: Path
) -> None:
    log_in(client, alice.email, "wrong password")
    log_in(client, alice.email, alice.password)
    client.get("/logout")

    log = read_log(log_file)
    name = app.logger.name
    assert log.count(f"INFO {name}: Notes app created") == 1
    assert log.count(f"WARNING {name}.auth: Failed login for {alice.email}") == 1
    assert log.count(f"INFO {name}: User {alice.id} logged in") == 1
    assert log.count(f"INFO {name}: User {alice.id} logged out") == 1
    assert TRACEBACK not in log


def test_client_errors_are_not_logged_as_errors(
    client: FlaskClient, alice: Account, log_file: Path
) -> None:
    """404s and rejected input are the client's doing: no error, no traceback."""
    log_in(client, alice.email, alice.password)
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/api/notes/12345").status_code == 404
    assert client.post("/api/notes", json={}).status_code == 422

    log = read_log(log_file)
    assert f"User {alice.id} logged in" in log  # the file is written to
    assert " ERROR " not in log
    assert TRACEBACK not in log
