"""Every statement of a request within its deadline, on real PostgreSQL and MariaDB.

A statement still running at the deadline is cancelled by the server and a
statement that would start after it is refused; either way the request is
answered 504, and the one connection of the pool serves the next request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_resilience import RequestDeadlineExceeded, Resilience, query_timeout, request_timeout
from flask_resilience.outages import classify_database_error
from tests.support.servers import MariaDBServer

SLEEP = {"postgresql": "SELECT pg_sleep({seconds})", "mysql": "SELECT SLEEP({seconds})"}


@pytest.fixture(params=["postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database, or the throwaway MariaDB's."""
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_url")
    else:
        server: MariaDBServer = request.getfixturevalue("mariadb")
        yield server.url


def deadline_app(make_app: Callable[..., Flask], url: str, timeout: float) -> Flask:
    # One connection in the pool: the request after a cancelled one must get it back usable.
    app = make_app(
        SQLALCHEMY_DATABASE_URI=url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0},
        RESILIENCE_REQUEST_TIMEOUT=timeout,
    )
    db = SQLAlchemy(app)

    def sleep(seconds: float) -> None:
        dialect = db.engine.dialect.name
        db.session.execute(sa.text(SLEEP[dialect].format(seconds=seconds)))

    @app.get("/three-sleeps")
    def three_sleeps() -> str:
        for _ in range(3):  # one transaction of three statements
            sleep(0.8)
        return "slept"

    @app.get("/patient")
    @request_timeout(5)
    def patient() -> str:
        for _ in range(3):
            sleep(0.8)
        return "slept"

    @app.get("/narrowed")
    def narrowed() -> str:
        with query_timeout(0.5):
            sleep(3)
        return "slept"

    @app.get("/late")
    def late() -> str:
        time.sleep(timeout + 0.1)  # Python work past the deadline, then a statement
        sleep(0)
        return "queried"

    @app.get("/one")
    def one() -> str:
        return str(db.session.execute(sa.text("SELECT 1")).scalar())

    Resilience(app, db=db)
    return app


def timed(app: Flask, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = app.test_client().get(path)
    return response.status_code, time.perf_counter() - started


def test_three_statements_under_one_deadline_end_at_the_deadline(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    app = deadline_app(make_app, database_url, timeout=2)
    status, elapsed = timed(app, "/three-sleeps")
    assert status == 504
    assert 1.9 <= elapsed <= 2.3  # the cancellation, the rollback and a loaded machine
    assert app.test_client().get("/one").get_data(as_text=True) == "1"


def test_a_view_with_a_longer_budget_runs_its_statements(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    app = deadline_app(make_app, database_url, timeout=2)
    status, elapsed = timed(app, "/patient")
    assert status == 200
    assert elapsed >= 2.4


def test_query_timeout_narrows_the_deadline_of_a_block(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    app = deadline_app(make_app, database_url, timeout=30)
    status, elapsed = timed(app, "/narrowed")
    assert status == 504
    assert elapsed <= 0.8
    assert app.test_client().get("/one").get_data(as_text=True) == "1"


def test_a_statement_after_the_deadline_is_refused_before_it_is_sent(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    app = deadline_app(make_app, database_url, timeout=0.3)
    assert app.test_client().get("/late").status_code == 504
    assert app.test_client().get("/one").get_data(as_text=True) == "1"


def test_query_timeout_outside_a_request_cancels_the_statement(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    app = deadline_app(make_app, database_url, timeout=30)
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        dialect = db.engine.dialect.name
        started = time.perf_counter()
        # A killed SLEEP() on MariaDB may end quietly (the deadline is raised at its
        # end) or with "query execution was interrupted", by when the kill landed.
        with (
            query_timeout(0.3),
            pytest.raises((sa.exc.OperationalError, RequestDeadlineExceeded)) as raised,
        ):
            db.session.execute(sa.text(SLEEP[dialect].format(seconds=3)))
        assert time.perf_counter() - started <= 0.8
        # What a view would have answered: the deadline's 504, not an outage's 503.
        error = raised.value
        if isinstance(error, sa.exc.OperationalError):
            assert isinstance(classify_database_error(error), RequestDeadlineExceeded)
        else:
            assert dialect != "postgresql"  # PostgreSQL's cancel always fails the statement
        db.session.rollback()
        assert db.session.execute(sa.text("SELECT 1")).scalar() == 1
