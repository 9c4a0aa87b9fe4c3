"""Every 4xx and 5xx is an RFC 9457 problem document (or an HTML page for browsers)."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, abort, got_request_exception, request
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import UnsupportedMediaType

from flask_resilience import ProblemError, Resilience

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "instance", "request_id"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


class NotAnImage(ProblemError, UnsupportedMediaType):
    pass


pytestmark = pytest.mark.config(MAX_FORM_MEMORY_SIZE=1000)


@pytest.fixture
def app(app: Flask) -> Flask:
    """The chain's app with a crashing view, an abort, a problem error and a form."""

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret-value /srv/app/settings.py SELECT * FROM users")

    @app.get("/api/abort")
    def aborted() -> str:
        abort(409, "That name is taken.")

    @app.post("/api/upload")
    def upload() -> str:
        raise NotAnImage("Not an image.", errors=[{"field": "file", "message": "is HTML"}])

    @app.post("/form")
    def form() -> dict[str, int]:
        return {"fields": len(request.form), "files": len(request.files)}

    return app


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body.keys() >= PROBLEM_MEMBERS
    assert body["status"] == status
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_unknown_url_is_a_404_problem(client: FlaskClient) -> None:
    body = assert_problem(client.get("/missing"), 404)
    assert body["title"] == "Not Found"
    assert body["instance"] == "/missing"
    assert body["type"] == "about:blank"


def test_an_int_segment_too_long_to_convert_is_a_404_problem(
    app: Flask, client: FlaskClient
) -> None:
    # int() refuses text of over 4,300 digits; Werkzeug before 3.1.9 let that be a 500.
    @app.get("/items/<int:number>")
    def item(number: int) -> str:
        return str(number)

    assert client.get("/items/" + "9" * 4000).status_code == 200
    assert_problem(client.get("/items/" + "9" * 5000), 404)


def test_wrong_method_keeps_the_allow_header(client: FlaskClient) -> None:
    response = client.delete("/boom")
    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_abort_detail_reaches_the_client(client: FlaskClient) -> None:
    body = assert_problem(client.get("/api/abort"), 409)
    assert body["detail"] == "That name is taken."


def test_problem_error_members_are_in_the_body(client: FlaskClient) -> None:
    body = assert_problem(client.post("/api/upload"), 415)
    assert body["errors"] == [{"field": "file", "message": "is HTML"}]
    assert body["detail"] == "Not an image."


def test_unhandled_exception_hides_everything_outside_debug(client: FlaskClient) -> None:
    response = client.get("/boom")
    assert_problem(response, 500)
    text = response.get_data(as_text=True)
    for leak in ("secret-value", "settings.py", "SELECT", "Traceback", "RuntimeError"):
        assert leak not in text


def test_debug_mode_says_more(app: Flask, client: FlaskClient) -> None:
    app.debug = True
    app.config["PROPAGATE_EXCEPTIONS"] = False
    body = assert_problem(client.get("/boom"), 500)
    assert "RuntimeError" in body["detail"]


def test_unhandled_exception_signalled_and_logged_exactly_once(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[BaseException] = []

    def record(sender: Flask, exception: BaseException, **_: Any) -> None:
        seen.append(exception)

    got_request_exception.connect(record, app)
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(5):
                client.get("/boom")
    finally:
        got_request_exception.disconnect(record, app)
    assert len(seen) == 5
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert len(logged) == 5
    assert {r.exc_info[1] for r in logged if r.exc_info} == set(seen)
    assert all(r.levelno == logging.ERROR for r in logged)


def test_browsers_get_an_html_page(client: FlaskClient) -> None:
    response = client.get("/missing", headers=BROWSER)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert response.headers["X-Request-ID"] in response.get_data(as_text=True)


def test_api_paths_get_json_even_for_browsers(client: FlaskClient) -> None:
    assert_problem(client.get("/api/abort", headers=BROWSER), 409)


@pytest.mark.parametrize(
    ("forced", "accept", "mimetype"),
    [("json", BROWSER, "application/problem+json"), ("html", {}, "text/html")],
)
def test_error_format_can_be_forced(
    make_app: Callable[..., Flask], forced: str, accept: dict[str, str], mimetype: str
) -> None:
    app = make_app(RESILIENCE_ERROR_FORMAT=forced)
    Resilience(app)
    response = app.test_client().get("/api/missing", headers=accept)
    assert response.status_code == 404
    assert response.mimetype == mimetype


def test_html_page_escapes_the_detail(app: Flask, client: FlaskClient) -> None:
    @app.get("/xss")
    def xss() -> str:
        abort(400, "<script>alert(1)</script>")

    text = client.get("/xss", headers=BROWSER).get_data(as_text=True)
    assert "<script>" not in text
    assert "&lt;script&gt;" in text


def test_users_can_still_override_one_status(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    Resilience(app)

    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return "custom", 404

    assert app.test_client().get("/missing").get_data(as_text=True) == "custom"


def test_oversized_body_is_a_413_problem(make_app: Callable[..., Flask]) -> None:
    app = make_app(MAX_CONTENT_LENGTH=1024)

    @app.post("/api/echo")
    def echo() -> str:
        return str(len(request.get_data()))

    Resilience(app)
    client = app.test_client()
    assert_problem(client.post("/api/echo", data=b"x" * 2048), 413)
    assert client.post("/api/echo", data=b"x" * 10).get_data(as_text=True) == "10"


def test_too_many_form_parts_is_a_413_problem(client: FlaskClient) -> None:
    fields = {f"field{i}": "v" for i in range(1001)}
    response = client.post("/form", data=fields, content_type="multipart/form-data")
    assert_problem(response, 413)


def test_oversized_form_field_is_a_413_problem(client: FlaskClient) -> None:
    response = client.post("/form", data={"note": "x" * 2000}, content_type="multipart/form-data")
    assert_problem(response, 413)


def test_the_app_serves_the_next_request_after_limits(client: FlaskClient) -> None:
    client.post("/form", data={"note": "x" * 2000}, content_type="multipart/form-data")
    response = client.post(
        "/form",
        data={"a": "1", "f": (io.BytesIO(b"abc"), "a.txt")},
        content_type="multipart/form-data",
    )
    assert response.get_json() == {"fields": 1, "files": 1}


_EXCEPTIONS = st.sampled_from(
    [ValueError, KeyError, RuntimeError, ZeroDivisionError, LookupError, OSError, TypeError]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    exception=_EXCEPTIONS,
    message=st.text(max_size=40),
    status=st.sampled_from([400, 401, 403, 404, 409, 410, 418, 422, 429, 500, 502, 503]),
    segment=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=20),
)
def test_every_failure_is_valid_problem_json(
    make_app: Callable[..., Flask],
    exception: type[Exception],
    message: str,
    status: int,
    segment: str,
) -> None:
    app = make_app()
    Resilience(app)

    @app.get("/raise/<path:anything>")
    def raising(anything: str) -> str:
        raise exception(f"TOPSECRET {message}")

    @app.get("/abort/<path:anything>")
    def aborting(anything: str) -> str:
        abort(status)

    client = app.test_client()
    for path, expected in ((f"/raise/{segment}", 500), (f"/abort/{segment}", status)):
        response = client.get(path)
        body = assert_problem(response, expected)
        assert "TOPSECRET" not in response.get_data(as_text=True)
        assert "Traceback" not in response.get_data(as_text=True)
        assert body["instance"] == path
    assert_problem(client.get(f"/{segment}/nowhere"), 404)
