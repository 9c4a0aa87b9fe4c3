"""Property: no request, however hostile, breaks a route of the example app.

Every rule of ``app.url_map`` is fuzzed (a new route is picked up by itself) with
hostile paths, query strings, headers, cookies and bodies, anonymously and as each
demo account. Whatever comes in, the answer is never a 5xx, shows no traceback, no
secret and no SQL, is a problem document when it is an error (a page only for a
browser), and the app serves the next request. ``HYPOTHESIS_PROFILE=fuzz`` runs
many more examples.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from example_app import create_app
from example_app.extensions import resilience
from flask_resilience.health import health_state

from .fuzzing import (
    ANONYMOUS,
    DOCUMENTS,
    EMAILS,
    PASSWORDS,
    PROBLEM_JSON,
    VISITOR,
    FuzzRequest,
    Route,
    Session,
    UnknownConverterError,
    asked_for_html,
    leaks,
    problem_errors,
    render,
    requests_for,
    rule_paths,
)
from .helpers import HEALTH_TOKEN, basic_auth, csrf_token_in, log_in

pytestmark = pytest.mark.filterwarnings(
    # Werkzeug's form parser drops the temporary file of a part it was writing when the
    # body turns out malformed or too large; CPython closes it at once, with this warning.
    "ignore:Unclosed file <tempfile.SpooledTemporaryFile:ResourceWarning"
)

ALLOWED_SERVER_ERRORS = {
    # The outbound service is down by design here (port 9 discards): the route answers
    # 502 while calls to it fail, and 503 once its circuit breaker has opened.
    "api.outbound": frozenset({502, 503}),
}
"""The only 5xx answers allowed, by endpoint: those a route gives on purpose."""

SHOWN_ON_PURPOSE = {
    # The demo's login page prints the demo accounts' passwords for visitors to try.
    "auth.login": PASSWORDS,
}
"""Secrets a route's page shows on purpose."""

EXAMPLES_PER_ROUTE = 25
EXAMPLES_ON_POSTGRES = 40

PROBE = basic_auth("alice@acme.test")
SECRET_KEY = "test secret key"
"""The key of the app that lists the routes, and of the checks' own test."""


def fuzz_settings(max_examples: int) -> settings:
    """``max_examples`` in the test suite; under ``HYPOTHESIS_PROFILE``, the profile's count."""
    if os.environ.get("HYPOTHESIS_PROFILE", "default") != "default":
        max_examples = settings().max_examples
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


def routes_of(app: Flask) -> list[Route]:
    return sorted(
        (
            Route(rule.endpoint, rule.rule, tuple(sorted(rule.methods or ())))
            for rule in app.url_map.iter_rules()
        ),
        key=str,
    )


def _routes() -> list[Route]:
    # Collection needs the routes before any fixture exists: a throwaway app lists them.
    with tempfile.TemporaryDirectory() as folder:
        return routes_of(
            create_app(
                {
                    "TESTING": True,
                    "INSTANCE_PATH": folder,
                    "SQLALCHEMY_DATABASE_URI": "sqlite://",
                    "SECRET_KEY": SECRET_KEY,
                    "RESILIENCE_HEALTH_TOKEN": HEALTH_TOKEN,
                }
            )
        )


ROUTES = _routes()


@pytest.fixture
def app_config(app_config: dict[str, object]) -> dict[str, object]:
    # As in production: an unhandled exception is answered with a 500 instead of being
    # raised into the test, so that the answer itself is checked.
    app_config["PROPAGATE_EXCEPTIONS"] = False
    return app_config


def _session_of(app: Flask, client: FlaskClient, csrf_token: str) -> Session:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    return Session(f"{cookie.key}={cookie.value}", csrf_token)


@dataclass
class Fuzzer:
    """Sends drawn requests to one app and checks each answer and the app after it."""

    app: Flask
    client: FlaskClient
    sessions: dict[str, Session]
    caplog: pytest.LogCaptureFixture

    def exchange(self, request: FuzzRequest, route: Route) -> None:
        # Every example starts with empty rate-limit counters: a 429 would hide the route.
        resilience.limiter.reset()
        self.caplog.clear()
        response = self.send(request)
        with response:  # a download holds its file open until closed
            event(f"{request.method} {response.status_code}")
            self.check_answer(request, response, route)
            self.check_logged_once(response)
        self.check_still_serving()

    def send(self, request: FuzzRequest) -> TestResponse:
        rendered = render(request, self.sessions[request.identity], self.app.config["SECRET_KEY"])
        return self.client.open(
            request.path,
            method=request.method,
            query_string=request.query,
            headers=list(request.headers),
            input_stream=rendered.stream,
            environ_overrides=rendered.environ,
        )

    def check_answer(self, request: FuzzRequest, response: TestResponse, route: Route) -> None:
        status = response.status_code
        details = (
            f"{request.method} {request.path} answered {status}: {response.get_data()[:500]!r}"
        )
        if status >= 500:
            assert status in ALLOWED_SERVER_ERRORS.get(route.endpoint, ()), (
                f"{details}\n{self.logged_errors()}"
            )
        shown = SHOWN_ON_PURPOSE.get(route.endpoint, ()) if status == 200 else ()
        found = [
            leak
            for leak in leaks(response, request, self.app.config["SECRET_KEY"])
            if leak not in shown
        ]
        assert not found, f"{details}\nThe answer shows {found}"
        if status >= 400:
            errors = problem_errors(response, request)
            assert not errors, f"{details}\n{errors} (asked for HTML: {asked_for_html(request)})"

    def check_logged_once(self, response: TestResponse) -> None:
        request_id = response.headers.get("X-Request-ID")
        if request_id is None:
            # Only liveness answers without one: the app answers it before anything runs.
            assert response.status_code < 400, "an error answer without its request id"
            return
        records = [r for r in self.caplog.records if getattr(r, "request_id", None) == request_id]
        errors = [record for record in records if record.levelno >= logging.ERROR]
        assert len(errors) <= 1, f"{len(errors)} ERROR records for one request: {errors}"
        # The extension's record of a failed request carries its status.
        answered = [record for record in records if hasattr(record, "status")]
        if response.status_code >= 400:
            assert len(answered) == 1, f"{response.status_code} logged {len(answered)} times"
        else:
            assert not answered

    def check_still_serving(self) -> None:
        assert self.client.get("/health/live").status_code == 200
        me = self.client.get("/api/me", headers=PROBE)
        assert me.status_code == 200, me.get_data()
        assert me.get_json() is not None and me.get_json()["email"] == "alice@acme.test"

    def logged_errors(self) -> str:
        return "\n".join(self.caplog.text.splitlines()[-60:])


def upload_documents(app: Flask) -> None:
    """Two documents in each organization, ids 1 to 4, for the routes that show one."""
    client = app.test_client()
    for email in ("alice@acme.test", "dave@globex.test"):
        for name, content in DOCUMENTS[:2]:
            response = client.post(
                "/api/documents",
                headers=basic_auth(email),
                data={"file": (io.BytesIO(content), name)},
                content_type="multipart/form-data",
            )
            assert response.status_code == 201, response.get_data()


@pytest.fixture
def fuzzer(app: Flask, caplog: pytest.LogCaptureFixture) -> Iterator[Fuzzer]:
    caplog.set_level(logging.INFO)
    browser = app.test_client()
    visitor_token = csrf_token_in(browser.get("/login").get_data(as_text=True))
    sessions = {ANONYMOUS: Session(), VISITOR: _session_of(app, browser, visitor_token)}
    for email in EMAILS:
        browser = app.test_client()
        sessions[email] = _session_of(app, browser, log_in(browser, email))
    upload_documents(app)
    # Cookies are the fuzzer's to send, garbage included: no cookie jar.
    yield Fuzzer(app, app.test_client(use_cookies=False), sessions, caplog)
    with app.app_context():
        # POST /health/monitoring/start may have started the monitor's thread.
        health_state(app).monitor.stop()


def test_every_rule_is_fuzzed(app: Flask) -> None:
    """The fuzzed routes are the app's, and a strategy can build a path for each."""
    assert routes_of(app) == ROUTES
    for route in ROUTES:
        try:
            rule_paths(route.rule)
        except UnknownConverterError as error:
            pytest.fail(f"{error}: add one to fuzzing.SEGMENTS")


def test_the_checks_catch_what_they_must() -> None:
    """A crash page fails every check, so that a passing fuzz run means something."""
    wants_json = FuzzRequest("GET", "/api/me", "", ANONYMOUS, (("Accept", "application/json"),))
    wants_html = replace(wants_json, headers=(("Accept", "text/html"),))
    crash = Response(
        'Traceback (most recent call last):\n  File "db.py"\n'
        f"sqlite3.OperationalError: SELECT {SECRET_KEY}",
        500,
        mimetype="text/html",
    )
    assert leaks(crash, wants_html, SECRET_KEY) == [
        "Traceback (most recent call last)",
        'File "',
        SECRET_KEY,
        "SELECT ",
        "sqlite3",
    ]
    assert leaks(crash, replace(wants_html, path="/SELECT%20"), SECRET_KEY)[-2:] == [
        SECRET_KEY,
        "sqlite3",
    ]  # "SELECT " was the client's own
    assert problem_errors(crash, wants_json) != []
    assert problem_errors(crash, wants_html) == []

    wrong = Response('{"status": 400, "title": 1, "type": "nope"}', 404, mimetype=PROBLEM_JSON)
    assert len(problem_errors(wrong, wants_json)) == 3
    right = Response(
        '{"status": 404, "title": "Not Found", "type": "about:blank"}', 404, mimetype=PROBLEM_JSON
    )
    assert problem_errors(right, wants_json) == []
    assert problem_errors(Response("{}", 404, mimetype="application/json"), wants_json) != []


@pytest.mark.parametrize("route", ROUTES, ids=str)
@fuzz_settings(EXAMPLES_PER_ROUTE)
@given(data=st.data())
def test_no_request_breaks_a_route(fuzzer: Fuzzer, route: Route, data: st.DataObject) -> None:
    fuzzer.exchange(data.draw(requests_for(route), label="request"), route)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
@fuzz_settings(EXAMPLES_ON_POSTGRES)
@given(data=st.data())
def test_no_request_breaks_the_app_on_postgresql(
    fuzzer: Fuzzer,
    backend: str,  # named for pytest before 9, which parametrizes only a test's own arguments
    data: st.DataObject,
) -> None:
    route = data.draw(st.sampled_from(ROUTES), label="route")
    fuzzer.exchange(data.draw(requests_for(route), label="request"), route)
