"""Database failures become 503/504 problems, never a 500 or a hang (real PostgreSQL)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_resilience import Resilience, query_timeout, request_timeout
from tests.support.servers import PostgresServer, libpq_conninfo, wait_until


def database_app(make_app: Callable[..., Flask], url: str, **config: object) -> Flask:
    app = make_app(SQLALCHEMY_DATABASE_URI=url, **config)
    db = SQLAlchemy(app)

    @app.get("/one")
    def one() -> str:
        return str(db.session.execute(sa.text("SELECT 1")).scalar())

    @app.get("/sleep/<float:seconds>")
    def sleep(seconds: float) -> str:
        db.session.execute(sa.text("SELECT pg_sleep(:s)"), {"s": seconds})
        return "slept"

    @app.get("/patient/<float:seconds>")
    @request_timeout(5)
    def patient(seconds: float) -> str:
        db.session.execute(sa.text("SELECT pg_sleep(:s)"), {"s": seconds})
        return "slept"

    @app.get("/narrow")
    def narrow() -> str:
        with query_timeout(0.3):
            db.session.execute(sa.text("SELECT pg_sleep(3)"))
        return "slept"

    @app.get("/late-query")
    def late_query() -> str:
        time.sleep(0.3)
        return str(db.session.execute(sa.text("SELECT 1")).scalar())

    @app.get("/lost-after-query")
    def lost_after_query() -> str:
        # The view's last query succeeds, then the server ends the connection (a
        # restart, an administrator) while the request's transaction is still open.
        backend = db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with psycopg.connect(libpq_conninfo(url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
            wait_until(
                lambda: (
                    not admin.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)
                    ).fetchone()
                ),
                timeout=5,
            )
        return "answered"

    @app.get("/slow-python")
    def slow_python() -> str:
        time.sleep(0.3)
        return "done"

    Resilience(app, db=db)
    return app


def in_thread(work: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_server_down_is_503_and_back_up_on_the_first_try(
    make_app: Callable[..., Flask], pg: PostgresServer
) -> None:
    client = database_app(make_app, pg.url).test_client()
    assert client.get("/one").status_code == 200
    pg.kill()
    response = client.get("/one")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    pg.restart()
    assert client.get("/one").status_code == 200


def test_an_outage_is_logged_once_per_request_as_a_warning_without_traceback(
    make_app: Callable[..., Flask], pg: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = database_app(make_app, pg.url).test_client()
    assert client.get("/one").status_code == 200
    pg.kill()
    with caplog.at_level(logging.INFO):
        answers = [client.get("/one", headers={"X-Request-ID": f"outage-{n}"}) for n in range(3)]
    pg.restart()
    assert [answer.status_code for answer in answers] == [503, 503, 503]
    records = [r for r in caplog.records if r.name.endswith("flask_resilience")]
    assert [r.levelno for r in records] == [logging.WARNING] * 3
    assert all(r.exc_info is None for r in records)
    for n, record in enumerate(records):
        message = record.getMessage()
        assert f"request_id=outage-{n}" in message
        assert "-> 503" in message and "OperationalError: " in message
        assert "\n" not in message


def test_a_crash_is_still_logged_with_its_traceback(
    make_app: Callable[..., Flask], postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = database_app(make_app, postgres_url)

    @app.get("/bug")
    def bug() -> str:
        raise ZeroDivisionError("division by zero in a view")

    with caplog.at_level(logging.INFO):
        response = app.test_client().get("/bug")
    assert response.status_code == 500
    # Flask's own record, once, with the request's id: nothing else logs the crash.
    [record] = [r for r in caplog.records if r.exc_info is not None]
    assert record.name == app.logger.name
    assert record.getMessage() == "Exception on /bug [GET]"
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ZeroDivisionError)
    assert getattr(record, "request_id", None) == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM no_such_table",
        "SELEC 1",
        "SELECT 1 / 0",
        "SELECT 'not a number'::int",
    ],
    ids=["missing-table", "syntax", "division", "data"],
)
def test_a_database_bug_is_a_crash_not_an_outage(
    make_app: Callable[..., Flask],
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
    statement: str,
) -> None:
    app = database_app(make_app, postgres_url)
    db = app.extensions["sqlalchemy"]

    @app.get("/bug")
    def bug() -> str:
        db.session.execute(sa.text(statement))
        return "never"

    with caplog.at_level(logging.INFO):
        response = app.test_client().get("/bug")
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    [record] = [r for r in caplog.records if r.exc_info is not None]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "Exception on /bug [GET]"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], sa.exc.DBAPIError)
    assert app.test_client().get("/one").get_data(as_text=True) == "1"


def test_server_killed_mid_request_is_503(
    make_app: Callable[..., Flask], pg: PostgresServer
) -> None:
    client = database_app(make_app, pg.url).test_client()
    assert client.get("/one").status_code == 200

    def kill_soon() -> None:
        time.sleep(0.5)
        pg.kill()

    killer = in_thread(kill_soon)
    response = client.get("/sleep/10.0")
    killer.join()
    assert response.status_code == 503
    assert response.get_json()["status"] == 503
    pg.restart()
    assert client.get("/one").status_code == 200


def test_a_connection_lost_after_the_last_query_does_not_fail_the_answer(
    make_app: Callable[..., Flask], postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = database_app(make_app, postgres_url).test_client()
    with caplog.at_level(logging.WARNING):
        response = client.get("/lost-after-query")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "answered"
    assert "The database connection was lost before the session was closed" in caplog.text
    assert client.get("/one").get_data(as_text=True) == "1"


def test_exhausted_pool_is_503_within_pool_timeout(
    make_app: Callable[..., Flask], postgres_url: str
) -> None:
    app = database_app(
        make_app,
        postgres_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0, "pool_timeout": 1},
    )
    holder = in_thread(lambda: app.test_client().get("/sleep/2.0"))
    time.sleep(0.3)  # let the first request take the only connection
    started = time.perf_counter()
    response = app.test_client().get("/one")
    elapsed = time.perf_counter() - started
    holder.join()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    # pool_timeout + 100 ms, plus scheduling slack for a loaded 2-core machine
    assert elapsed < 1.0 + 0.1 + 0.15
    assert app.test_client().get("/one").status_code == 200


def test_statement_past_the_deadline_is_504_and_the_worker_goes_on(
    make_app: Callable[..., Flask], postgres_url: str
) -> None:
    client = database_app(make_app, postgres_url, RESILIENCE_REQUEST_TIMEOUT=1).test_client()
    started = time.perf_counter()
    response = client.get("/sleep/60.0")
    assert time.perf_counter() - started < 1.5
    assert response.status_code == 504
    assert response.get_json()["title"] == "Gateway Timeout"
    assert client.get("/one").get_data(as_text=True) == "1"


def test_a_view_can_have_a_longer_budget(make_app: Callable[..., Flask], postgres_url: str) -> None:
    client = database_app(make_app, postgres_url, RESILIENCE_REQUEST_TIMEOUT=0.3).test_client()
    assert client.get("/sleep/0.6").status_code == 504
    assert client.get("/patient/0.6").status_code == 200


def test_query_timeout_narrows_one_block(make_app: Callable[..., Flask], postgres_url: str) -> None:
    client = database_app(make_app, postgres_url).test_client()
    started = time.perf_counter()
    assert client.get("/narrow").status_code == 504
    assert time.perf_counter() - started < 1.0


def test_query_timeout_works_outside_requests(
    make_app: Callable[..., Flask], postgres_url: str
) -> None:
    app = database_app(make_app, postgres_url)
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        with (
            query_timeout(0.2),
            pytest.raises(sa.exc.OperationalError, match="canceling statement"),
        ):
            db.session.execute(sa.text("SELECT pg_sleep(2)"))
        db.session.rollback()
        assert db.session.execute(sa.text("SELECT 1")).scalar() == 1


def test_no_transaction_starts_after_the_deadline(
    make_app: Callable[..., Flask], postgres_url: str
) -> None:
    client = database_app(make_app, postgres_url, RESILIENCE_REQUEST_TIMEOUT=0.1).test_client()
    assert client.get("/late-query").status_code == 504


def test_requests_finishing_late_are_counted_and_logged(
    make_app: Callable[..., Flask], postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = database_app(make_app, postgres_url, RESILIENCE_REQUEST_TIMEOUT=0.1)
    with app.app_context():  # outside any request: no deadline for the first connect
        app.extensions["sqlalchemy"].session.execute(sa.text("SELECT 1"))
    client = app.test_client()
    with caplog.at_level(logging.WARNING):
        assert client.get("/slow-python").status_code == 200
        assert client.get("/one").status_code == 200
    (warning,) = [r for r in caplog.records if "after its deadline" in r.getMessage()]
    assert "/slow-python" in warning.getMessage()


def test_integrity_errors_stay_500(make_app: Callable[..., Flask], postgres_url: str) -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI=postgres_url)
    db = SQLAlchemy(app)

    @app.get("/duplicate")
    def duplicate() -> str:
        db.session.execute(sa.text("CREATE TEMP TABLE t (id int primary key)"))
        db.session.execute(sa.text("INSERT INTO t VALUES (1), (1)"))
        return "no"

    Resilience(app, db=db)
    assert app.test_client().get("/duplicate").status_code == 500
