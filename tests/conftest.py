"""Shared pytest fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings

from flask_resilience import Resilience
from flask_resilience.health import HealthState
from flask_resilience.health.monitor import Monitor
from flask_resilience.state import ResilienceState
from tests.support.paths import ROOT
from tests.support.servers import (
    MariaDBServer,
    PostgresServer,
    RedisServer,
    create_database,
    drop_database,
    flush_redis,
    mariadb_unavailable_reason,
    normalize_postgres_url,
    postgres_unavailable_reason,
    redis_unavailable_reason,
    skip_or_fail,
    unique_database_name,
)

# ``HYPOTHESIS_PROFILE=fuzz`` runs the property tests that do not fix their own count
# (the example app's fuzz tests among them) with many more examples, for a long run.
settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# ===========================================================================
# Database servers
#
# Real PostgreSQL and Redis servers, never mocks.
#
# * ``pg`` / ``redis``: a private throwaway server (``PostgresServer`` /
#   ``RedisServer``) that the test may stop, kill and restart.  It is started
#   once per session and restarted at the start of each test that uses it if
#   an earlier test left it down.  ``postgres_server`` / ``redis_server`` are
#   the underlying session fixtures, without that restart.
# * ``postgres_url`` / ``redis_url``: a URL for tests that only need a working
#   server.  It points at RESILIENCE_TEST_POSTGRES_URL /
#   RESILIENCE_TEST_REDIS_URL when set, otherwise at another throwaway server
#   (not the one fault tests kill).  Each test gets a fresh PostgreSQL
#   database, dropped afterwards, and an empty Redis database.
#
# When a server cannot be started because its binaries are missing, the tests
# that need it are skipped with a hint on what to install; under CI (``CI``
# environment variable set) they fail instead.
# ===========================================================================

POSTGRES_URL_ENV = "RESILIENCE_TEST_POSTGRES_URL"
REDIS_URL_ENV = "RESILIENCE_TEST_REDIS_URL"


def _server_base_dir() -> Path:
    # The system temp folder rather than pytest's tmp_path: when the tests run
    # as root, PostgreSQL runs as the postgres user, which cannot enter
    # root's private pytest folder.
    return Path(tempfile.gettempdir())


ServerT = TypeVar("ServerT", PostgresServer, RedisServer)


def _start(server_class: type[ServerT], unavailable: Callable[[], str | None]) -> ServerT:
    """Start a throwaway server, or skip (fail under CI) when its binaries are missing."""
    reason = unavailable()
    if reason is not None:
        skip_or_fail(reason)
    server = server_class(_server_base_dir())
    try:
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return server


def _start_postgres() -> PostgresServer:
    return _start(PostgresServer, postgres_unavailable_reason)


def _start_redis() -> RedisServer:
    return _start(RedisServer, redis_unavailable_reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Throwaway PostgreSQL server for the whole session (always private).

    Tests that stop or kill it should use ``pg``, which brings it back up.
    """
    server = _start_postgres()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:
    """The throwaway PostgreSQL server, running (restarted if a test killed it).

    Its ``url`` points at the database ``test``, which is shared between tests;
    use ``pg.create_database()`` for a private one.
    """
    if not postgres_server.is_running():
        postgres_server.restart()
    return postgres_server


@pytest.fixture(scope="session")
def _postgres_shared() -> Iterator[tuple[str, PostgresServer | None]]:
    """URL of the server behind ``postgres_url``, and that server if we own it."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        yield normalize_postgres_url(url), None
        return
    server = _start_postgres()
    try:
        yield server.url, server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(_postgres_shared: tuple[str, PostgresServer | None]) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    url, server = _postgres_shared
    if server is not None and not server.is_running():
        server.restart()
    name = unique_database_name()
    database_url = create_database(url, name)
    try:
        yield database_url
    finally:
        drop_database(url, name)


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """A throwaway MariaDB server for the session; its ``url`` is the ``test`` database."""
    reason = mariadb_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    server = MariaDBServer(_server_base_dir())
    try:
        server.start()
    except BaseException:
        server.cleanup()
        raise
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Throwaway Redis server for the whole session (always private).

    Tests that stop or kill it should use ``redis``, which brings it back up.
    """
    server = _start_redis()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(name="redis")
def redis_fixture(redis_server: RedisServer) -> RedisServer:
    """The throwaway Redis server, running (restarted if needed) and empty."""
    if not redis_server.is_running():
        redis_server.restart()
    flush_redis(redis_server.url)
    return redis_server


@pytest.fixture(scope="session")
def _redis_shared() -> Iterator[tuple[str, RedisServer | None]]:
    """URL of the server behind ``redis_url``, and that server if we own it."""
    url = os.environ.get(REDIS_URL_ENV)
    if url:
        yield url, None
        return
    server = _start_redis()
    try:
        yield server.url, server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(_redis_shared: tuple[str, RedisServer | None]) -> str:
    """URL of a Redis database that is empty at the start of the test.

    Only the URL's own database is flushed (FLUSHDB), so pointing
    RESILIENCE_TEST_REDIS_URL at a spare database of a shared server is safe.
    """
    url, server = _redis_shared
    if server is not None and not server.is_running():
        server.restart()
    flush_redis(url, all_databases=False)
    return url


# ===========================================================================
# End of database servers
# ===========================================================================


# ===========================================================================
# Applications
# ===========================================================================


@pytest.fixture(autouse=True)
def _stop_monitor_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stop every health monitor thread that the test started, when it ends.

    An app that serves a request outside testing mode starts its monitor's thread,
    which samples until the app is garbage collected: that can be tests later, where
    what it logs ("error_rate is critical") lands in another test's ``caplog``.
    """
    # Weakly: a test may check that an app nobody holds takes its thread with it.
    started: weakref.WeakSet[Monitor] = weakref.WeakSet()
    start = Monitor.start

    def recording_start(monitor: Monitor) -> None:
        started.add(monitor)
        start(monitor)

    monkeypatch.setattr(Monitor, "start", recording_start)
    yield
    for monitor in list(started):
        monitor.stop()


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Make Flask apps, without the extension: ``make_app(**config)``, as many as the test needs.

    Each has its instance folder in ``tmp_path``, a secret key, and
    ``PROPAGATE_EXCEPTIONS`` off, as in production, so an unhandled exception is
    answered by the app instead of raised into the test. At the end of the test
    the database engines of every app made are disposed of and their health
    monitors stopped.
    """
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = Flask("testapp", instance_path=str(tmp_path / "instance"))
        app.config.update(
            SECRET_KEY="a-test-secret-key-long-enough-to-pass-checks",
            PROPAGATE_EXCEPTIONS=False,
        )
        app.config.update(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        stop_monitor(app)
        dispose_engines(app)


def stop_monitor(app: Flask) -> None:
    state = app.extensions.get("resilience")
    health = state.find(HealthState) if isinstance(state, ResilienceState) else None
    if health is not None:
        health.monitor.stop()


def dispose_engines(app: Flask) -> None:
    db = app.extensions.get("sqlalchemy")
    if db is None:
        return
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


# The app of a test, one fixture on the next: app_config -> app -> resilience -> client.
# A folder's conftest.py (or a module) overrides a link for its area, taking the one
# above as its argument: ``def app_config(app_config)`` to add keys, ``def app(app)``
# to add views, ``def resilience(resilience)`` to register loaders.


@pytest.fixture
def app_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The configuration ``app`` is made with, over ``make_app``'s own.

    It is what the ``config`` markers of the test, its class and its module say
    (``@pytest.mark.config(KEY=value)``), the nearest marker winning. An override
    puts its keys under the markers': ``return {"KEY": value, **app_config}``.
    """
    config: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("config"))):
        config.update(marker.kwargs)
    return config


@pytest.fixture
def app(make_app: Callable[..., Flask], app_config: dict[str, Any]) -> Flask:
    """The test's app: ``make_app(**app_config)``, the extension not yet on it."""
    return make_app(**app_config)


@pytest.fixture
def resilience(app: Flask) -> Resilience:
    """The extension, initialised on ``app``."""
    return Resilience(app)


@pytest.fixture
def client(app: Flask, resilience: Resilience) -> FlaskClient:
    """A test client of ``app`` with the extension on it."""
    return app.test_client()


@pytest.fixture
def harness_smoke(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m harness.<name> --smoke [options]``, its page written to ``tmp_path``.

    The harnesses start their own PostgreSQL and Redis: without the binaries the
    test is skipped (a failure under CI).
    """
    for reason in (postgres_unavailable_reason(), redis_unavailable_reason()):
        if reason is not None:
            skip_or_fail(reason)

    def run(name: str, *options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                f"harness.{name}",
                "--smoke",
                "--output",
                str(tmp_path),
                *options,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=150,
        )

    return run
