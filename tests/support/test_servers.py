"""Tests of the throwaway database servers the test-suite relies on."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.servers import (
    PostgresServer,
    RedisServer,
    find_postgres_bin,
    free_port,
    libpq_conninfo,
    normalize_postgres_url,
    port_is_open,
    postgres_unavailable_reason,
    redis_unavailable_reason,
    skip_or_fail,
    unique_database_name,
    with_database,
)

# Database names handed out by ``postgres_url`` in this module, in order.
_seen_databases: list[str] = []


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """psycopg connection from a SQLAlchemy URL, failing fast when refused."""
    return psycopg.connect(libpq_conninfo(url), connect_timeout=3)


def _redis_client(url: str) -> redis_lib.Redis:
    """Client that reports a dead server at once instead of retrying."""
    return redis_lib.Redis.from_url(
        url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )


def _scalar(conn: psycopg.Connection[tuple[object, ...]], query: str) -> object:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _fake_executable(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_find_postgres_bin_prefers_newest_version(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for version in ("9.6", "10", "15"):
        _fake_executable(lib / version / "bin" / "initdb")
    (lib / "16" / "bin").mkdir(parents=True)  # newer, but without initdb
    _fake_executable(lib / "main" / "bin" / "initdb")  # not a version
    (lib / "15" / "bin" / "pg_ctl").write_text("not executable")

    # path="" disables the PATH lookup, so only lib_dir counts.
    assert find_postgres_bin("initdb", path="", lib_dir=lib) == str(lib / "15/bin/initdb")
    assert find_postgres_bin("pg_ctl", path="", lib_dir=lib) is None
    assert find_postgres_bin("initdb", path="", lib_dir=tmp_path / "missing") is None

    # PATH wins over the versioned folders.
    on_path = tmp_path / "path" / "initdb"
    _fake_executable(on_path)
    assert find_postgres_bin("initdb", path=str(on_path.parent), lib_dir=lib) == str(on_path)


def test_find_postgres_bin_finds_installed_binaries() -> None:
    reason = postgres_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    for name in ("initdb", "pg_ctl", "postgres"):
        found = find_postgres_bin(name)
        assert found is not None
        assert os.access(found, os.X_OK)
    assert find_postgres_bin("no-such-postgres-program") is None


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert port_is_open(port)
    assert not port_is_open(port)


def test_skip_or_fail_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="install it"):
        skip_or_fail("server missing: install it")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="install it"):
        skip_or_fail("server missing: install it")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("server missing: install it")


def test_postgres_url_helpers() -> None:
    url = "postgresql://u:p%40ss@db.example:5433/app?sslmode=disable"
    assert normalize_postgres_url(url).startswith("postgresql+psycopg://u:p%40ss@db.example:5433")
    assert normalize_postgres_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    conninfo = libpq_conninfo("postgresql+psycopg://u:p%40s%20s@h:1/d?sslmode=disable")
    assert conninfo_to_dict(conninfo) == {
        "host": "h",
        "port": "1",
        "user": "u",
        "password": "p@s s",
        "dbname": "d",
        "sslmode": "disable",
    }
    assert with_database("postgresql+psycopg://u@h:1/d", "other") == (
        "postgresql+psycopg://u@h:1/other"
    )
    assert unique_database_name() != unique_database_name()


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_accepts_queries(pg: PostgresServer) -> None:
    assert pg.is_running()
    assert pg.url == f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/test"
    with _connect(pg.url) as conn:
        assert _scalar(conn, "SELECT current_database()") == "test"
        assert _scalar(conn, "SHOW max_connections") == "100"
        assert _scalar(conn, "SHOW fsync") == "off"
    # The URL is meant for SQLAlchemy, so check it works there too.
    engine = sa.create_engine(pg.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1 + 1")).scalar_one() == 2
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_kill_then_restart_keeps_committed_data(pg: PostgresServer) -> None:
    name = unique_database_name("crash")
    url = pg.create_database(name)
    try:
        with _connect(url) as conn:
            conn.execute("CREATE TABLE survivors (name text)")
            conn.execute("INSERT INTO survivors VALUES ('committed')")
        # Leaving the block committed.  This one is never committed:
        uncommitted = _connect(url)
        uncommitted.execute("INSERT INTO survivors VALUES ('in flight')")

        port = pg.port
        pg.kill()
        assert not pg.is_running()
        assert not port_is_open(port)
        with pytest.raises(psycopg.OperationalError):
            _connect(url).close()
        with pytest.raises(psycopg.OperationalError):
            uncommitted.execute("SELECT 1")
        uncommitted.close()

        pg.restart()  # crash recovery
        assert pg.is_running()
        assert pg.port == port
        with _connect(url) as conn:
            rows = conn.execute("SELECT name FROM survivors").fetchall()
        assert rows == [("committed",)]
    finally:
        if pg.is_running():
            pg.drop_database(name)


@pytest.mark.postgres
def test_postgres_stop_is_idempotent(pg: PostgresServer) -> None:
    pg.stop()
    pg.stop()
    assert not pg.is_running()
    with pytest.raises(psycopg.OperationalError):
        _connect(pg.url).close()
    pg.start()
    with _connect(pg.url) as conn:
        assert _scalar(conn, "SELECT 1") == 1


@pytest.mark.postgres
@pytest.mark.redis
def test_a_fault_test_may_leave_servers_down(pg: PostgresServer, redis: RedisServer) -> None:
    pg.kill()
    redis.kill()
    assert not pg.is_running()
    assert not redis.is_running()


@pytest.mark.postgres
@pytest.mark.redis
def test_fixtures_bring_servers_back_up(pg: PostgresServer, redis: RedisServer) -> None:
    # Runs after the test above, which left both servers dead.
    assert pg.is_running()
    with _connect(pg.url) as conn:
        assert _scalar(conn, "SELECT 1") == 1
    assert redis.is_running()
    client = _redis_client(redis.url)
    try:
        assert client.ping()
    finally:
        client.close()


@pytest.mark.postgres
def test_databases_are_isolated_and_drop_forces_disconnect(pg: PostgresServer) -> None:
    first, second = unique_database_name(), unique_database_name()
    first_url, second_url = pg.create_database(first), pg.create_database(second)
    try:
        with _connect(first_url) as conn:
            conn.execute("CREATE TABLE only_in_first (x int)")
        with _connect(second_url) as conn:
            assert _scalar(conn, "SELECT to_regclass('only_in_first') IS NULL") is True

        # A session still using the database does not block the drop.
        lingering = _connect(first_url)
        try:
            pg.drop_database(first)
            with pytest.raises(psycopg.OperationalError):
                lingering.execute("SELECT 1")
        finally:
            lingering.close()
        with _connect(pg.url) as conn:
            names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        assert first not in names
        assert second in names
    finally:
        pg.drop_database(first)
        pg.drop_database(second)


@pytest.mark.postgres
@pytest.mark.parametrize("round_", [1, 2])
def test_postgres_url_is_a_fresh_database(postgres_url: str, round_: int) -> None:
    database = sa.make_url(postgres_url).database
    assert database is not None
    assert database != "test"
    assert database not in _seen_databases
    with _connect(postgres_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE leftover (x int)")  # must not reach round 2
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    # Databases of earlier tests were dropped.
    assert not names.intersection(_seen_databases)
    _seen_databases.append(database)


@pytest.fixture(scope="module")
def password_pg() -> Iterator[PostgresServer]:
    reason = postgres_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    with PostgresServer(Path(tempfile.gettempdir()), password="s3cret/p@ss word") as server:
        yield server


@pytest.mark.postgres
def test_password_protected_postgres(password_pg: PostgresServer) -> None:
    url = password_pg.url
    assert "s3cret" in url
    with _connect(url) as conn:
        assert _scalar(conn, "SELECT current_user") == "postgres"

    wrong = sa.make_url(url).set(password="wrong").render_as_string(hide_password=False)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(wrong).close()
    anonymous = f"postgresql+psycopg://postgres@127.0.0.1:{password_pg.port}/test"
    with pytest.raises(psycopg.OperationalError):
        _connect(anonymous).close()

    # Per-test databases work with a password in the URL too.
    name = unique_database_name()
    db_url = password_pg.create_database(name)
    try:
        engine = sa.create_engine(db_url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == name
        finally:
            engine.dispose()
    finally:
        password_pg.drop_database(name)


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_kill_then_restart(redis: RedisServer) -> None:
    assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
    client = _redis_client(redis.url)
    try:
        client.set("key", "value")
        assert client.get("key") == b"value"

        port = redis.port
        redis.kill()
        assert not redis.is_running()
        assert not port_is_open(port)
        with pytest.raises(redis_lib.ConnectionError):
            client.get("key")

        redis.restart()
        assert redis.port == port
        assert client.get("key") is None  # no persistence: a crash loses data
        client.set("key", "again")
        assert client.get("key") == b"again"
    finally:
        client.close()


@pytest.mark.redis
@pytest.mark.parametrize("round_", [1, 2])
def test_redis_fixture_is_flushed(redis: RedisServer, round_: int) -> None:
    # FLUSHALL: every database is empty, not only the URL's.
    for database in (0, 1):
        client = _redis_client(redis.url.removesuffix("/0") + f"/{database}")
        try:
            assert client.dbsize() == 0
            client.set("leftover", round_)
        finally:
            client.close()


@pytest.mark.redis
@pytest.mark.parametrize("round_", [1, 2])
def test_redis_url_is_flushed(redis_url: str, round_: int) -> None:
    client = _redis_client(redis_url)
    try:
        assert client.dbsize() == 0
        client.set("leftover", round_)
    finally:
        client.close()


@pytest.mark.redis
def test_redis_server_cleanup_removes_everything() -> None:
    reason = redis_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    with RedisServer(Path(tempfile.gettempdir())) as server:
        root, port = server.root, server.port
        assert root.is_dir()
        assert port_is_open(port)
    assert not server.is_running()
    assert not root.exists()
    assert not port_is_open(port)
    with pytest.raises(RuntimeError, match="cleaned up"):
        server.start()
    server.cleanup()  # idempotent
