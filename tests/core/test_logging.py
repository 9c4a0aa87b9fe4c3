"""Request ids, context on every log record, secret scrubbing, JSON lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
from flask import Flask, current_app, request
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, login_user

from flask_resilience import Resilience
from flask_resilience.log import JsonFormatter, current_request_id


class User(UserMixin):  # type: ignore[misc]  # Flask-Login is untyped
    def __init__(self, user_id: str) -> None:
        self.id = user_id


@pytest.fixture
def app(app: Flask) -> Flask:
    """The chain's app with a view that logs and one that fails after reading its body."""
    own_logger = logging.getLogger("testapp.views")

    @app.get("/hello")
    def hello() -> dict[str, str | None]:
        current_app.logger.warning("from app.logger")
        own_logger.warning("from a module logger")
        return {"request_id": current_request_id()}

    @app.post("/api/login-fails")
    def login_fails() -> str:
        request.get_json()
        raise RuntimeError("after reading the body")

    return app


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO):
        yield caplog


def test_a_valid_incoming_request_id_is_kept(client: FlaskClient) -> None:
    response = client.get("/hello", headers={"X-Request-ID": "edge-42.a:b"})
    assert response.headers["X-Request-ID"] == "edge-42.a:b"
    assert response.get_json() == {"request_id": "edge-42.a:b"}


@pytest.mark.parametrize(
    "incoming", ["", "x" * 129, "has space", "new\nline", "<script>", "ünïcode"]
)
def test_an_invalid_incoming_request_id_is_replaced(client: FlaskClient, incoming: str) -> None:
    # Through the WSGI environ: a client library would refuse to send some of these.
    response = client.get("/hello", environ_base={"HTTP_X_REQUEST_ID": incoming})
    generated = response.headers["X-Request-ID"]
    assert generated != incoming
    assert len(generated) == 32
    assert response.get_json() == {"request_id": generated}


def test_every_request_gets_a_different_id(client: FlaskClient) -> None:
    ids = {client.get("/hello").headers["X-Request-ID"] for _ in range(20)}
    assert len(ids) == 20


def test_every_log_record_of_the_request_carries_its_context(
    client: FlaskClient, logs: pytest.LogCaptureFixture
) -> None:
    response = client.get("/hello", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    request_id = response.headers["X-Request-ID"]
    mine = [r for r in logs.records if r.getMessage().startswith("from ")]
    assert {r.name for r in mine} == {"testapp", "testapp.views"}
    for record in mine:
        assert record.request_id == request_id  # type: ignore[attr-defined]
        assert record.path == "/hello"  # type: ignore[attr-defined]
        assert record.method == "GET"  # type: ignore[attr-defined]
        assert record.remote_addr == "203.0.113.9"  # type: ignore[attr-defined]


@pytest.mark.usefixtures("resilience")
def test_records_outside_requests_have_placeholders() -> None:
    record = logging.getLogger("elsewhere").makeRecord(
        "elsewhere", logging.INFO, __file__, 1, "outside", (), None
    )
    assert record.request_id == "-"  # type: ignore[attr-defined]


def test_the_error_log_line_names_the_request(
    client: FlaskClient, logs: pytest.LogCaptureFixture
) -> None:
    response = client.get("/missing")
    (line,) = [r for r in logs.records if r.name.endswith("flask_resilience")]
    message = line.getMessage()
    assert "GET /missing -> 404" in message
    assert f"request_id={response.headers['X-Request-ID']}" in message
    assert line.levelno == logging.INFO
    assert line.status == 404  # type: ignore[attr-defined]


def test_secrets_are_scrubbed_from_the_error_record(
    app: Flask, client: FlaskClient, logs: pytest.LogCaptureFixture
) -> None:
    client.post(
        "/api/login-fails?api_key=QUERYSECRET&page=2",
        json={"email": "a@b.test", "password": "BODYSECRET", "card_number": "4111111111111111"},
        headers={"Authorization": "Bearer HEADERSECRET", "Cookie": "session=COOKIESECRET"},
    )
    # Flask's own record of the crash, the request added to it.
    (line,) = [r for r in logs.records if r.exc_info is not None]
    assert line.name == app.logger.name
    logged = json.dumps(line.request)  # type: ignore[attr-defined]
    for secret in ("QUERYSECRET", "BODYSECRET", "4111111111111111", "HEADERSECRET", "COOKIESECRET"):
        assert secret not in logged
    assert line.request["fields"]["email"] == "a@b.test"  # type: ignore[attr-defined]
    assert line.request["args"]["page"] == "2"  # type: ignore[attr-defined]


def test_the_user_id_is_logged_when_flask_login_has_a_user(
    make_app: Callable[..., Flask], logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    login_manager = LoginManager(app)
    login_manager.user_loader(User)

    @app.get("/me")
    def me() -> str:
        login_user(User("user-7"))
        raise RuntimeError("fails for a known user")

    Resilience(app)
    app.test_client().get("/missing-page")
    app.test_client().get("/me")
    (crash,) = [r for r in logs.records if r.exc_info is not None]
    assert crash.user_id == "user-7"  # type: ignore[attr-defined]
    (line,) = [r for r in logs.records if r.name.endswith("flask_resilience")]
    assert "user_id=-" in line.getMessage()  # the 404 came before the login


def test_json_formatter_writes_one_object_per_line(
    client: FlaskClient, logs: pytest.LogCaptureFixture
) -> None:
    response = client.get("/missing")
    (line,) = [r for r in logs.records if r.name.endswith("flask_resilience")]
    text = JsonFormatter().format(line)
    assert "\n" not in text
    entry = json.loads(text)
    assert entry["request_id"] == response.headers["X-Request-ID"]
    assert entry["status"] == 404
    assert entry["level"] == "INFO"


def test_log_json_setting_formats_the_handlers(make_app: Callable[..., Flask]) -> None:
    root = logging.getLogger()
    saved = [(handler, handler.formatter) for handler in root.handlers]
    try:
        Resilience(make_app(RESILIENCE_LOG_JSON=True))
        assert root.handlers
        assert all(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers)
    finally:
        for handler, formatter in saved:
            handler.setFormatter(formatter)


def test_a_request_id_set_by_the_view_is_not_doubled(make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.get("/own")
    def own() -> tuple[str, int, dict[str, str]]:
        return "", 204, {"X-Request-ID": "chosen-by-the-view"}

    Resilience(app)
    response = app.test_client().get("/own")
    assert response.headers.getlist("X-Request-ID") == ["chosen-by-the-view"]


def test_requests_sharing_an_app_context_keep_their_own_ids(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():
        for _ in range(3):
            response = client.get("/missing")
            assert response.get_json()["request_id"] == response.headers["X-Request-ID"]


def test_the_client_address_comes_through_proxy_fix(
    app: Flask, client: FlaskClient, logs: pytest.LogCaptureFixture
) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    client.get(
        "/missing",
        headers={"X-Forwarded-For": "198.51.100.23"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    (line,) = [r for r in logs.records if r.name.endswith("flask_resilience")]
    assert "remote_addr=198.51.100.23" in line.getMessage()


@pytest.mark.usefixtures("resilience")
def test_json_lines_keep_every_extra_attribute_of_a_record(app: Flask) -> None:
    """What an instrumentation or the app's own ``extra=`` puts on a record is kept."""
    with app.test_request_context("/orders"):
        record = logging.getLogger("testapp.orders").makeRecord(
            "testapp.orders",
            logging.WARNING,
            __file__,
            1,
            "order %s refused",
            ("A-17",),
            None,
            extra={"otelTraceID": "4bf92f3577b34da6a3ce929d0e0e4736", "tenant": "acme"},
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "order A-17 refused"
    assert entry["otelTraceID"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert entry["tenant"] == "acme"
    assert entry["path"] == "/orders"
    assert "args" not in entry and "msg" not in entry  # LogRecord's own attributes stay out


@pytest.mark.usefixtures("resilience")
def test_the_apps_own_extra_attributes_win_over_the_context(
    app: Flask, logs: pytest.LogCaptureFixture
) -> None:
    """An app that logs ``extra={"user_id": ...}`` itself keeps working, and its value wins."""
    with app.test_request_context("/notes/3", method="DELETE"):
        logging.getLogger("testapp.notes").warning("deleted", extra={"user_id": 42, "path": "x"})
    (record,) = [r for r in logs.records if r.getMessage() == "deleted"]
    assert record.user_id == 42  # type: ignore[attr-defined]
    assert record.path == "x"  # type: ignore[attr-defined]
    assert record.method == "DELETE"  # type: ignore[attr-defined]
    assert logging.Formatter("%(method)s %(user_id)s").format(record) == "DELETE 42"
