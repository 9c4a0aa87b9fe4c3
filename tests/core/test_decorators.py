"""safe_route_handler and log_errors: a failure becomes an answer, logged once."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, abort, got_request_exception
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from flask_resilience import Resilience, log_errors, safe_route_handler
from tests.support.servers import PostgresServer


@pytest.fixture
def signalled() -> Iterator[list[BaseException]]:
    seen: list[BaseException] = []

    def record(sender: Flask, exception: BaseException, **_: Any) -> None:
        seen.append(exception)

    got_request_exception.connect(record)
    yield seen
    got_request_exception.disconnect(record)


@pytest.fixture
def app(app: Flask) -> Flask:
    """The chain's app with a view for each way a handler can answer."""

    @app.get("/api/stacked")
    @safe_route_handler
    @log_errors
    def stacked() -> str:
        raise ValueError("stacked failure")

    @app.get("/api/fallback")
    @safe_route_handler(fallback=({"items": [], "degraded": True}, 200))
    def with_fallback() -> str:
        raise ValueError("fallback failure")

    @app.get("/api/computed")
    @safe_route_handler(fallback=lambda error: ({"error": type(error).__name__}, 200))
    def computed() -> str:
        raise KeyError("computed failure")

    @app.get("/api/bad-gateway")
    @safe_route_handler(status=502)
    def bad_gateway() -> str:
        raise ConnectionError("upstream failure")

    @app.get("/api/not-found")
    @safe_route_handler(fallback="never used")
    def not_found() -> str:
        abort(404)

    @app.get("/api/async")
    @safe_route_handler(status=503)
    async def asynchronous() -> str:
        await asyncio.sleep(0)
        raise ValueError("async failure")

    @app.get("/api/async-ok")
    @safe_route_handler
    async def asynchronous_ok() -> str:
        await asyncio.sleep(0)
        return "fine"

    @app.get("/api/logged")
    @log_errors
    def logged() -> str:
        raise ValueError("logged failure")

    return app


def error_records(caplog: pytest.LogCaptureFixture, kind: type[BaseException]) -> list[Any]:
    return [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], kind)]


def test_stacked_with_log_errors_answers_500_logged_and_signalled_once(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, signalled: list[BaseException]
) -> None:
    response = client.get("/api/stacked")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "stacked failure" not in response.get_data(as_text=True)
    assert len(error_records(caplog, ValueError)) == 1
    assert [str(e) for e in signalled] == ["stacked failure"]


def test_fallback_value_is_returned(client: FlaskClient, signalled: list[BaseException]) -> None:
    response = client.get("/api/fallback")
    assert response.status_code == 200
    assert response.get_json() == {"items": [], "degraded": True}
    assert len(signalled) == 1


def test_fallback_callable_gets_the_error(client: FlaskClient) -> None:
    assert client.get("/api/computed").get_json() == {"error": "KeyError"}


def test_status_of_the_problem_can_be_chosen(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/api/bad-gateway")
    assert response.status_code == 502
    assert response.get_json()["status"] == 502
    (record,) = error_records(caplog, ConnectionError)
    assert "-> 502" in record.getMessage()


def test_http_errors_pass_through(client: FlaskClient, signalled: list[BaseException]) -> None:
    response = client.get("/api/not-found")
    assert response.status_code == 404
    assert signalled == []


def test_async_views_work(client: FlaskClient) -> None:
    assert client.get("/api/async").status_code == 503
    assert client.get("/api/async-ok").get_data(as_text=True) == "fine"


def test_log_errors_reraises_and_logs_once(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, signalled: list[BaseException]
) -> None:
    response = client.get("/api/logged")
    assert response.status_code == 500
    assert len(error_records(caplog, ValueError)) == 1
    assert len(signalled) == 1


def test_log_errors_outside_requests(caplog: pytest.LogCaptureFixture) -> None:
    @log_errors
    def service() -> None:
        raise ValueError("in a job")

    with pytest.raises(ValueError, match="in a job"):
        service()
    assert len(error_records(caplog, ValueError)) == 1


def test_names_and_signatures_are_kept() -> None:
    def view(org_id: int, *, page: int = 1) -> str:
        """Docs."""
        return ""

    for wrapped in (
        safe_route_handler(view),
        safe_route_handler(status=503)(view),
        log_errors(view),
    ):
        assert wrapped.__name__ == "view"
        assert wrapped.__doc__ == "Docs."
        assert inspect.signature(wrapped) == inspect.signature(view)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_are_never_caught(interrupt: type[BaseException]) -> None:
    @safe_route_handler(fallback="swallowed")
    @log_errors
    def stop() -> str:
        raise interrupt()

    with pytest.raises(interrupt):
        stop()


def test_a_status_that_is_not_an_error_is_refused() -> None:
    with pytest.raises(ValueError, match="HTTP error status"):
        safe_route_handler(status=200)


def test_database_down_inside_the_handler_is_503(
    make_app: Callable[..., Flask], pg: PostgresServer
) -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI=pg.url)
    db = SQLAlchemy(app)

    @app.get("/api/report")
    @safe_route_handler
    def report() -> str:
        return str(db.session.execute(sa.text("SELECT 1")).scalar())

    Resilience(app, db=db)
    client = app.test_client()
    assert client.get("/api/report").status_code == 200
    pg.stop()
    response = client.get("/api/report")
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    pg.restart()
    assert client.get("/api/report").status_code == 200


def test_logging_is_to_the_extension_logger(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        client.get("/api/stacked")
    assert {r.name for r in error_records(caplog, ValueError)} == {"testapp.flask_resilience"}
