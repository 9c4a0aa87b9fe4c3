"""Helpers of the health tests: a PostgreSQL server with a password, waits, cleanup."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import (
    PostgresServer,
    free_port,
    postgres_unavailable_reason,
    skip_or_fail,
    wait_until,
)

__all__ = [
    "PASSWORD",
    "free_port",
    "health_postgres",
    "skip_or_fail",
    "stop_monitors",
    "wait_until",
]

PASSWORD = "s3cret-Pa55word-xyz"


@pytest.fixture(autouse=True)
def stop_monitors() -> Iterator[None]:
    yield
    from tests.health.apps import stop_monitors

    stop_monitors()


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
