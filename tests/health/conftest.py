"""The health tests' link of the fixture chain, and a PostgreSQL server with a password."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.health.apps import HEALTH_CONFIG, PASSWORD, add_health_views
from tests.support.servers import PostgresServer, postgres_unavailable_reason, skip_or_fail


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**HEALTH_CONFIG, **app_config}


@pytest.fixture
def app(app: Flask) -> Flask:
    add_health_views(app)
    return app


@pytest.fixture(scope="session")
def health_postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server whose URL carries a password the tests look for."""
    reason = postgres_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    server = PostgresServer(Path(tempfile.gettempdir()), password=PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
