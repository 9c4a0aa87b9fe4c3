"""Fixtures of the notes app's test-suite, the way such a project writes them.

One request context stays pushed for the whole of each test (as pytest-flask's
autouse fixture does), so tests can use ``db.session``, ``url_for`` and the models
directly; the test client's requests share its app context.

Every test runs twice: ``[plain]`` is the app as it is, the reference;
``[resilience]`` adds ``Resilience(app, db=db)`` as the extension's README says,
with nothing else configured. Both must see the same results.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_sqlalchemy import SQLAlchemy

from tests.bystander.helpers import Account, add_user
from tests.bystander.notes import create_app
from tests.bystander.notes.extensions import db as notes_db

MODES = ("plain", "resilience")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Which way the app is built; it appears in each test id, ``test_x[plain]``."""
    return cast(str, request.param)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "notes.log"


@pytest.fixture
def app(mode: str, tmp_path: Path, log_file: Path) -> Iterator[Flask]:
    # The record factory is process-wide, and whatever set it up (another test's app,
    # even one built while tests are collected) would reach into this app's records:
    # each test starts from Python's own and puts back what it found.
    record_factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "notes-tests-secret-key",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'notes.db'}",
            "LOG_FILE": str(log_file),
            # The default (scrypt) costs a noticeable fraction of a second per login.
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        }
    )
    if mode == "resilience":
        from flask_resilience import Resilience

        Resilience(app, db=notes_db)
    yield app

    # The app's logger is process-wide too: close this test's log file and let go of it.
    for handler in list(app.logger.handlers):
        if isinstance(handler, logging.FileHandler):
            app.logger.removeHandler(handler)
            handler.close()
    logging.setLogRecordFactory(record_factory)
    with app.app_context():
        for engine in notes_db.engines.values():
            engine.dispose()


@pytest.fixture(autouse=True)
def _request_context(app: Flask) -> Iterator[None]:
    """One request context for the whole test, with the tables created in it."""
    with app.test_request_context():
        notes_db.create_all()
        yield
        notes_db.session.remove()


@pytest.fixture(name="db")
def db_fixture() -> SQLAlchemy:
    return notes_db


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def alice() -> Account:
    return add_user("alice@example.org", "Alice", "alice-correct-horse")


@pytest.fixture
def bob() -> Account:
    return add_user("bob@example.org", "Bob", "bob-battery-staple")
