"""SQLAlchemy pool hardening, pool status and the rollback after a failed request.

Everything runs against real databases: PostgreSQL from the throwaway servers of
conftest.py, and SQLite in memory or in a file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.pool import NullPool, QueuePool, StaticPool
from werkzeug.exceptions import InternalServerError

from flask_resilience import ConfigurationError, Resilience, ResilienceWarning
from tests.support.apps import production_app
from tests.support.servers import PostgresServer

ORDERS = ["resilience first", "db first"]
PASSWORD = "s3cret-pw"

# What the extension promises for a queue pool the user did not tune.
PRODUCTION_DEFAULTS = {
    "pool_size": 10,
    "max_overflow": 20,
    "pool_recycle": 3600,
    "pool_pre_ping": True,
    "pool_timeout": 30,
}


Setup = Callable[..., tuple[Flask, SQLAlchemy, Resilience]]


@pytest.fixture
def setup() -> Iterator[Setup]:
    """Make an app with a db and the extension, initialised in the given order.

    Every engine is disposed of at the end, so no pooled connection outlives its test.
    """
    made: list[tuple[Flask, SQLAlchemy]] = []

    def make(
        order: str = "resilience first",
        engine_options: dict[str, Any] | None = None,
        **config: Any,
    ) -> tuple[Flask, SQLAlchemy, Resilience]:
        app = production_app(**config)
        db = SQLAlchemy(engine_options=engine_options)
        resilience = Resilience()
        made.append((app, db))
        if order == "resilience first":
            resilience.init_app(app, db=db)
            db.init_app(app)
        else:
            db.init_app(app)
            resilience.init_app(app, db=db)
        return app, db, resilience

    yield make

    for app, db in made:
        if "sqlalchemy" in app.extensions:
            with app.app_context():
                for engine in db.engines.values():
                    engine.dispose()


def select_one(engine: sa.Engine) -> int | None:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT 1")).scalar()


def pool_of(app: Flask, db: SQLAlchemy, bind: str | None = None) -> Any:
    with app.app_context():
        return db.engines[bind].pool


def assert_hardened(pool: Any, **expected: Any) -> None:
    """The pool runs with the production defaults, or the values given here."""
    want = {**PRODUCTION_DEFAULTS, **expected}
    assert isinstance(pool, QueuePool)
    assert pool.size() == want["pool_size"]
    assert pool._max_overflow == want["max_overflow"]
    assert pool._recycle == want["pool_recycle"]
    assert pool._pre_ping is want["pool_pre_ping"]
    assert pool.timeout() == want["pool_timeout"]


def pool_settings(pool: Any) -> tuple[int, int, int, bool]:
    return (pool.size(), pool._max_overflow, pool._recycle, pool._pre_ping)


def with_password(url: str) -> str:
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


# ---------------------------------------------------------------------------
# Pool defaults
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
def test_postgres_pool_gets_the_production_defaults(
    setup: Setup, postgres_url: str, order: str
) -> None:
    app, db, _ = setup(order, SQLALCHEMY_DATABASE_URI=postgres_url)

    assert_hardened(pool_of(app, db))
    with app.app_context():
        assert select_one(db.engine) == 1


@pytest.mark.parametrize("order", ORDERS)
def test_every_bind_is_hardened_whether_a_url_or_a_dict(
    setup: Setup, postgres_url: str, order: str
) -> None:
    app, db, resilience = setup(
        order,
        SQLALCHEMY_DATABASE_URI=postgres_url,
        SQLALCHEMY_BINDS={
            "as_url": postgres_url,
            "as_dict": {"url": postgres_url, "pool_size": 4},
        },
    )

    assert_hardened(pool_of(app, db, "as_url"))
    assert_hardened(pool_of(app, db, "as_dict"), pool_size=4)
    with app.app_context():
        assert {select_one(engine) for engine in db.engines.values()} == {1}
        status = resilience.pool_status()
    assert set(status) == {None, "as_url", "as_dict"}
    assert status["as_dict"]["size"] == 4


@pytest.mark.parametrize("order", ORDERS)
def test_options_the_user_set_are_never_overridden(
    setup: Setup, postgres_url: str, order: str
) -> None:
    options = {"pool_size": 3, "max_overflow": 0, "pool_recycle": 60, "pool_pre_ping": False}
    app, db, _ = setup(
        order,
        SQLALCHEMY_DATABASE_URI=postgres_url,
        SQLALCHEMY_ENGINE_OPTIONS=dict(options),
        SQLALCHEMY_BINDS={"other": {"url": postgres_url, "pool_size": 3}},
    )

    assert_hardened(pool_of(app, db), **options)
    assert_hardened(pool_of(app, db, "other"), pool_size=3)


@pytest.mark.parametrize("order", ORDERS)
def test_engine_options_given_to_the_sqlalchemy_constructor_are_not_overridden(
    setup: Setup, postgres_url: str, order: str
) -> None:
    app, db, _ = setup(
        order,
        engine_options={"pool_size": 4, "pool_timeout": 7},
        SQLALCHEMY_DATABASE_URI=postgres_url,
    )

    assert_hardened(pool_of(app, db), pool_size=4, pool_timeout=7)


def test_a_whole_pool_timeout_given_as_a_float_is_accepted(setup: Setup, postgres_url: str) -> None:
    app, db, _ = setup(
        SQLALCHEMY_DATABASE_URI=postgres_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_timeout": 30.0}
    )

    assert_hardened(pool_of(app, db))
    with app.app_context():
        assert select_one(db.engine) == 1


@pytest.mark.parametrize("where", ["SQLALCHEMY_ENGINE_OPTIONS", "SQLALCHEMY_BINDS"])
def test_a_fractional_pool_timeout_is_refused(setup: Setup, tmp_path: Path, where: str) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    if where == "SQLALCHEMY_ENGINE_OPTIONS":
        config: dict[str, Any] = {where: {"pool_timeout": 2.5}}
    else:
        config = {where: {"reports": {"url": url, "pool_timeout": 2.5}}}

    with pytest.raises(ConfigurationError) as info:
        setup(SQLALCHEMY_DATABASE_URI=url, **config)

    message = str(info.value)
    assert where in message
    assert "pool_timeout" in message
    assert "2.5" in message


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("pool_size", -1),
        ("pool_size", "10"),
        ("max_overflow", 1.5),
        ("pool_recycle", "1h"),
        ("pool_timeout", 0),
        ("pool_timeout", True),
        ("pool_pre_ping", "yes"),
    ],
)
def test_a_wrong_pool_option_is_refused_naming_it(
    setup: Setup, tmp_path: Path, option: str, value: Any
) -> None:
    with pytest.raises(ConfigurationError) as info:
        setup(
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}",
            SQLALCHEMY_ENGINE_OPTIONS={option: value},
        )

    assert option in str(info.value)
    assert repr(value) in str(info.value)


# ---------------------------------------------------------------------------
# Pools that take fewer options
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("poolclass", [None, NullPool, StaticPool, QueuePool])
@pytest.mark.parametrize("database", ["memory", "file"])
@pytest.mark.parametrize("order", ORDERS)
def test_sqlite_engines_work_whatever_their_pool(
    setup: Setup, tmp_path: Path, poolclass: Any, database: str, order: str
) -> None:
    url = "sqlite://" if database == "memory" else f"sqlite:///{tmp_path / 'app.db'}"
    options = {} if poolclass is None else {"poolclass": poolclass}

    app, db, resilience = setup(
        order, SQLALCHEMY_DATABASE_URI=url, SQLALCHEMY_ENGINE_OPTIONS=options
    )

    with app.app_context():
        db.session.execute(sa.text("CREATE TABLE notes (body TEXT)"))
        db.session.execute(sa.text("INSERT INTO notes VALUES ('kept')"))
        db.session.commit()
        assert db.session.execute(sa.text("SELECT body FROM notes")).scalar() == "kept"
        assert resilience.pool_status()[None]["pool"] == type(db.engine.pool).__name__


def test_a_sqlite_file_gets_the_production_defaults(setup: Setup, tmp_path: Path) -> None:
    app, db, _ = setup(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}")

    assert_hardened(pool_of(app, db))


@pytest.mark.parametrize("poolclass", [NullPool, StaticPool])
def test_postgres_with_a_pool_that_keeps_no_queue_works(
    setup: Setup, postgres_url: str, poolclass: Any
) -> None:
    app, db, resilience = setup(
        SQLALCHEMY_DATABASE_URI=postgres_url, SQLALCHEMY_ENGINE_OPTIONS={"poolclass": poolclass}
    )

    with app.app_context():
        assert isinstance(db.engine.pool, poolclass)
        assert select_one(db.engine) == 1
        status = resilience.pool_status()[None]
    assert status["pool"] == poolclass.__name__
    assert status["checked_out"] is None


@pytest.mark.parametrize(
    ("dropped", "kept"),
    [(["pool_size"], {}), (["max_overflow", "pool_size", "pool_timeout"], {"pool_recycle": 60})],
    ids=["one", "three"],
)
def test_an_option_the_pool_does_not_take_is_dropped_with_one_warning(
    setup: Setup, postgres_url: str, dropped: list[str], kept: dict[str, Any]
) -> None:
    options = {"poolclass": NullPool, **dict.fromkeys(dropped, 5), **kept}

    with pytest.warns(ResilienceWarning) as record:
        app, db, _ = setup(SQLALCHEMY_DATABASE_URI=postgres_url, SQLALCHEMY_ENGINE_OPTIONS=options)

    assert len(record) == 1
    message = str(record[0].message)
    assert all(name in message for name in dropped)
    assert "NullPool" in message
    with app.app_context():
        assert isinstance(db.engine.pool, NullPool)
        assert db.engine.pool._recycle == kept.get("pool_recycle", -1)
        assert select_one(db.engine) == 1


def test_an_option_dropped_from_a_bind_is_named_with_its_bind(
    setup: Setup, postgres_url: str
) -> None:
    binds = {"reports": {"url": postgres_url, "poolclass": NullPool, "pool_size": 5}}

    with pytest.warns(ResilienceWarning, match=r"SQLALCHEMY_BINDS\['reports'\].*pool_size"):
        app, db, _ = setup(SQLALCHEMY_DATABASE_URI=postgres_url, SQLALCHEMY_BINDS=binds)

    with app.app_context():
        assert select_one(db.engines["reports"]) == 1


def test_an_app_with_binds_only_has_them_hardened(setup: Setup, postgres_url: str) -> None:
    app, db, resilience = setup(SQLALCHEMY_BINDS={"reports": postgres_url})

    assert_hardened(pool_of(app, db, "reports"))
    with app.app_context():
        assert set(resilience.pool_status()) == {"reports"}


def test_a_creator_of_the_user_is_left_alone(setup: Setup, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app, db, resilience = setup(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{path}",
        SQLALCHEMY_ENGINE_OPTIONS={"creator": lambda: sqlite3.connect(path)},
    )

    with app.app_context():
        assert pool_settings(db.engine.pool) == (5, 10, -1, False)  # SQLAlchemy's own
        assert select_one(db.engine) == 1
        assert resilience.pool_status()[None]["limits"] == {}


def test_a_bind_without_a_url_is_refused(setup: Setup, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"SQLALCHEMY_BINDS.*'url'"):
        setup(
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}",
            SQLALCHEMY_BINDS={"reports": {"pool_size": 3}},
        )


@pytest.mark.parametrize("url", ["no-such-dialect://db", "not a url"])
def test_a_database_url_that_cannot_be_read_is_refused(setup: Setup, url: str) -> None:
    with pytest.raises(ConfigurationError, match="Cannot read the database URL"):
        setup(SQLALCHEMY_DATABASE_URI=url)


# ---------------------------------------------------------------------------
# Legacy keys, opting out, registration details
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "option"),
    [
        ("SQLALCHEMY_POOL_SIZE", "pool_size"),
        ("SQLALCHEMY_MAX_OVERFLOW", "max_overflow"),
        ("SQLALCHEMY_POOL_TIMEOUT", "pool_timeout"),
        ("SQLALCHEMY_POOL_RECYCLE", "pool_recycle"),
    ],
)
def test_a_legacy_pool_key_warns_naming_engine_options(
    setup: Setup, tmp_path: Path, key: str, option: str
) -> None:
    with pytest.warns(ResilienceWarning) as record:
        setup(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}", **{key: 7})

    assert len(record) == 1
    message = str(record[0].message)
    assert key in message
    assert "SQLALCHEMY_ENGINE_OPTIONS" in message
    assert option in message


@pytest.mark.parametrize("order", ORDERS)
def test_harden_pool_off_leaves_the_engine_options_alone(
    setup: Setup, tmp_path: Path, order: str
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    app, db, _ = setup(
        order,
        RESILIENCE_HARDEN_POOL=False,
        SQLALCHEMY_DATABASE_URI=url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 3},
        SQLALCHEMY_BINDS={"other": url},
    )

    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {"pool_size": 3}
    assert app.config["SQLALCHEMY_BINDS"] == {"other": url}
    # SQLAlchemy's own defaults: 5 + 10 connections, never recycled, never pinged.
    assert pool_settings(pool_of(app, db)) == (3, 10, -1, False)
    assert pool_settings(pool_of(app, db, "other")) == (5, 10, -1, False)


def test_db_first_registers_flask_sqlalchemy_hooks_once(setup: Setup, tmp_path: Path) -> None:
    app, db, _ = setup("db first", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}")

    assert app.teardown_appcontext_funcs.count(db._teardown_session) == 1
    assert len(app.teardown_appcontext_funcs) == len(set(app.teardown_appcontext_funcs))
    assert len(app.shell_context_processors) == len(set(app.shell_context_processors))


def test_db_first_with_another_sqlalchemy_instance_is_refused(tmp_path: Path) -> None:
    app = production_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}")
    SQLAlchemy(app)

    with pytest.raises(ConfigurationError, match="another SQLAlchemy instance"):
        Resilience(app, db=SQLAlchemy())


def test_init_after_the_first_request_is_refused_with_the_fix(tmp_path: Path) -> None:
    app = production_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}")
    db = SQLAlchemy(app)
    app.add_url_rule("/", "index", lambda: "ok")
    assert app.test_client().get("/").status_code == 200

    with pytest.raises(ConfigurationError, match="before it handles its first request"):
        Resilience(app, db=db)

    assert app.extensions["sqlalchemy"] is db
    with app.app_context():
        assert select_one(db.engine) == 1
        for engine in db.engines.values():
            engine.dispose()


# ---------------------------------------------------------------------------
# pool_status()
# ---------------------------------------------------------------------------


def test_pool_status_counts_connections_checked_out(setup: Setup, postgres_url: str) -> None:
    app, db, resilience = setup(SQLALCHEMY_DATABASE_URI=postgres_url)

    with app.app_context():
        connections = [db.engine.connect() for _ in range(3)]
        try:
            status = resilience.pool_status()[None]
        finally:
            for connection in connections:
                connection.close()
        after = resilience.pool_status()[None]

    assert status["pool"] == "QueuePool"
    assert status["checked_out"] == 3
    assert status["size"] == 10
    assert status["overflow"] == 0
    assert status["limits"] == PRODUCTION_DEFAULTS
    assert (after["checked_out"], after["checked_in"]) == (0, 3)


def test_pool_status_counts_overflow(setup: Setup, postgres_url: str) -> None:
    app, db, resilience = setup(
        SQLALCHEMY_DATABASE_URI=postgres_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 2}
    )

    with app.app_context():
        connections = [db.engine.connect() for _ in range(3)]
        try:
            status = resilience.pool_status()[None]
        finally:
            for connection in connections:
                connection.close()

    assert (status["size"], status["checked_out"], status["overflow"]) == (2, 3, 1)
    assert status["limits"]["pool_size"] == 2


def test_pool_status_never_shows_the_password(setup: Setup, postgres_url: str) -> None:
    url = with_password(postgres_url)
    app, db, resilience = setup(SQLALCHEMY_DATABASE_URI=url, SQLALCHEMY_BINDS={"other": url})

    with app.app_context():
        assert db.engine.url.password == PASSWORD  # the engine does use it
        assert select_one(db.engine) == 1
        status = resilience.pool_status()

    assert PASSWORD not in repr(status)
    assert status[None]["url"] == make_url(url).render_as_string(hide_password=True)


def test_pool_status_limits_are_the_options_in_force(setup: Setup, postgres_url: str) -> None:
    app, db, resilience = setup(
        engine_options={"pool_size": 4, "pool_timeout": 7}, SQLALCHEMY_DATABASE_URI=postgres_url
    )

    with app.app_context():
        pool = db.engine.pool
        limits = resilience.pool_status()[None]["limits"]
    assert isinstance(pool, QueuePool)

    assert limits == {
        "pool_size": pool.size(),
        "max_overflow": pool._max_overflow,
        "pool_recycle": pool._recycle,
        "pool_pre_ping": pool._pre_ping,
        "pool_timeout": pool.timeout(),
    }


# ---------------------------------------------------------------------------
# Rollback after a failed flush
# ---------------------------------------------------------------------------


def test_a_failed_flush_is_rolled_back_before_the_error_handler_and_the_next_request(
    setup: Setup, postgres_url: str
) -> None:
    app, db, _ = setup(SQLALCHEMY_DATABASE_URI=postgres_url, PROPAGATE_EXCEPTIONS=False)

    class Account(db.Model):  # type: ignore[name-defined, misc]
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(unique=True)

    def count_accounts() -> int | None:
        return db.session.scalar(sa.select(sa.func.count()).select_from(Account))

    @app.post("/accounts/<email>")
    def create_account(email: str) -> tuple[str, int]:
        db.session.add(Account(email=email))
        db.session.commit()
        return "created", 201

    @app.errorhandler(500)
    def internal_error(error: InternalServerError) -> tuple[dict[str, Any], int]:
        # Queries, as a handler looking up the current user would.
        failure = type(error.original_exception).__name__
        return {"failure": failure, "accounts": count_accounts()}, 500

    with app.app_context():  # every request below shares this context, and its session
        db.create_all()
        session = db.session()
        client = app.test_client()
        assert client.post("/accounts/ada@example.com").status_code == 201

        duplicate = client.post("/accounts/ada@example.com")

        assert duplicate.status_code == 500
        assert duplicate.get_json() == {"failure": "IntegrityError", "accounts": 1}
        assert client.post("/accounts/bob@example.com").status_code == 201
        assert count_accounts() == 2
        assert db.session() is session


def test_an_error_in_a_request_that_never_used_the_database_is_answered(
    setup: Setup, tmp_path: Path
) -> None:
    app, db, _ = setup(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}", PROPAGATE_EXCEPTIONS=False
    )

    @app.get("/broken")
    def broken() -> str:
        raise LookupError("no database involved")

    @app.errorhandler(500)
    def internal_error(_error: InternalServerError) -> tuple[dict[str, bool], int]:
        return {"session_opened": db.session.registry.has()}, 500

    response = app.test_client().get("/broken")

    assert response.status_code == 500
    assert response.get_json() == {"session_opened": False}  # no session made just to roll back


def test_a_database_lost_in_the_middle_of_a_request_answers_503_then_recovers(
    setup: Setup, pg: PostgresServer
) -> None:
    app, db, _ = setup(SQLALCHEMY_DATABASE_URI=pg.url, PROPAGATE_EXCEPTIONS=False)

    @app.get("/crash")
    def crash() -> str:
        db.session.execute(sa.text("SELECT 1"))
        pg.kill()
        db.session.execute(sa.text("SELECT 2"))
        return "unreachable"

    @app.get("/ping")
    def ping() -> str:
        return str(db.session.execute(sa.text("SELECT 1")).scalar())

    client = app.test_client()
    lost = client.get("/crash", headers={"Accept": "application/json"})
    assert lost.status_code == 503
    assert lost.headers["Retry-After"] == "5"

    pg.restart()

    assert client.get("/ping").get_data() == b"1"


# ---------------------------------------------------------------------------
# Pre-ping: a pooled connection that died with its server
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["restart", "kill"])
def test_the_first_request_after_a_database_restart_succeeds(
    setup: Setup, pg: PostgresServer, fault: str
) -> None:
    app, db, _ = setup(SQLALCHEMY_DATABASE_URI=pg.url, PROPAGATE_EXCEPTIONS=False)

    @app.get("/ping")
    def ping() -> str:
        return str(db.session.execute(sa.text("SELECT 1")).scalar())

    client = app.test_client()
    assert client.get("/ping").status_code == 200
    assert pool_of(app, db).checkedin() == 1  # the connection waits in the pool

    if fault == "kill":
        pg.kill()
    pg.restart()

    response = client.get("/ping")
    assert response.status_code == 200
    assert response.get_data() == b"1"
