"""Fixtures for the example app: a fresh app, database and instance folder per test.

The suite's fixture chain, for the example app: ``app_config`` is its
``test_config``, ``app`` is ``create_app(app_config)``, ``resilience`` the
extension it set up, ``client`` its test client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app
from example_app.demo import seed_accounts
from example_app.extensions import db
from example_app.extensions import resilience as extension
from flask_resilience import Resilience

from .helpers import HEALTH_TOKEN, log_in

# Far cheaper than the production scrypt; the tests check logic, not hash strength.
FAST_PASSWORD_HASH = "pbkdf2:sha256:1000"


@pytest.fixture
def backend() -> str:
    """The database the app runs on; ``helpers.on_both_backends`` parametrizes it."""
    return "sqlite"


@pytest.fixture
def instance_path(tmp_path: Path) -> Path:
    return tmp_path / "instance"


@pytest.fixture
def app_config(
    app_config: dict[str, Any],
    backend: str,
    instance_path: Path,
    request: pytest.FixtureRequest,
) -> dict[str, Any]:
    """The ``test_config`` for ``create_app``; tests may change it before using ``app``.

    ``config`` markers win over what is set here.

    Rate limits stay on, as in production, with their real values: each test builds
    its own app, whose limiter starts with empty in-memory counters, and no test
    other than those of test_limits.py sends anywhere near 100 requests a minute
    (the default limit) or 10 logins (the login limit).
    """
    if backend == "postgres":
        database_url = request.getfixturevalue("postgres_url")
    else:
        # Spelled out so that a DATABASE_URL in the environment cannot leak in.
        database_url = "sqlite:///example.db"
    return {
        "TESTING": True,
        "INSTANCE_PATH": str(instance_path),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "test secret key",
        "RESILIENCE_HEALTH_TOKEN": HEALTH_TOKEN,
        "PASSWORD_HASH_METHOD": FAST_PASSWORD_HASH,
        "OUTBOUND_URL": "http://127.0.0.1:9/",
        "OUTBOUND_TIMEOUT": 1.0,
        **app_config,
    }


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    """An app with the schema and the demo accounts, but no documents."""
    app = create_app(app_config)
    with app.app_context():
        db.create_all()
        seed_accounts()
        db.session.commit()
    yield app
    with app.app_context():
        # Close pooled connections so that PostgreSQL can drop the test database.
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def resilience(app: Flask) -> Resilience:
    """The example app's own extension, which ``create_app`` initialised on it."""
    return extension


@pytest.fixture
def client(app: Flask, resilience: Resilience) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def login(client: FlaskClient) -> Callable[..., None]:
    """Log ``client`` in through the HTML form, as a browser would."""

    def login(email: str, password: str | None = None) -> None:
        log_in(client, email, password)

    return login
