"""Load shedding on the X-Request-Start stamp a proxy sets."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import ExitStack

import pytest
from flask import (
    Flask,
    Request,
    Response,
    appcontext_popped,
    appcontext_pushed,
    appcontext_tearing_down,
    request_finished,
    request_started,
    request_tearing_down,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.test import TestResponse

from flask_resilience import ConfigurationError, Resilience
from flask_resilience.shedding import arrival_time


@pytest.fixture
def shedding_app(make_app: Callable[..., Flask]) -> tuple[Flask, list[str]]:
    """An app that sheds after 0.5 s of queueing, and the views it actually ran."""
    app = make_app(RESILIENCE_MAX_QUEUE_TIME=0.5, RATELIMIT_ENABLED=False)
    served: list[str] = []

    @app.get("/work")
    def work() -> str:
        served.append("work")
        return "done"

    Resilience(app)
    return app, served


def stamp(seconds_ago: float, scale: float = 1.0, prefix: str = "t=") -> str:
    return f"{prefix}{(time.time() - seconds_ago) * scale:.6f}"


@pytest.mark.parametrize(
    ("scale", "prefix"),
    [(1.0, "t="), (1.0, ""), (1e3, "t="), (1e6, "t=")],
    ids=["seconds", "bare seconds", "milliseconds", "microseconds"],
)
def test_a_request_that_queued_too_long_gets_503_without_running_the_view(
    shedding_app: tuple[Flask, list[str]],
    caplog: pytest.LogCaptureFixture,
    scale: float,
    prefix: str,
) -> None:
    app, served = shedding_app
    with caplog.at_level(logging.INFO):
        answer = app.test_client().get(
            "/work", headers={"X-Request-Start": stamp(3, scale, prefix)}
        )
    assert answer.status_code == 503
    assert answer.mimetype == "application/problem+json"
    assert answer.headers["Retry-After"] == "1"
    body = answer.get_json()
    assert body["status"] == 503
    assert 3 <= body["queue_seconds"] < 10
    assert "overloaded" in body["detail"]
    assert served == []
    # This request's records only: a monitor thread of another app may log meanwhile.
    records = [r for r in caplog.records if getattr(r, "request_id", None) == body["request_id"]]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert body["request_id"] in records[0].getMessage()


def test_prompt_unstamped_and_malformed_requests_are_served(
    shedding_app: tuple[Flask, list[str]],
) -> None:
    app, served = shedding_app
    client = app.test_client()
    for headers in ({"X-Request-Start": stamp(0.05)}, {}, {"X-Request-Start": "t=soon"}):
        assert client.get("/work", headers=headers).status_code == 200
    assert served == ["work"] * 3


def test_health_endpoints_and_the_next_request_are_served_after_shedding(
    shedding_app: tuple[Flask, list[str]],
) -> None:
    app, served = shedding_app
    client = app.test_client()
    old = {"X-Request-Start": stamp(30)}
    assert client.get("/work", headers=old).status_code == 503
    assert client.get("/health/live", headers=old).status_code == 200
    assert client.get("/work", headers={"X-Request-Start": stamp(0)}).status_code == 200
    assert served == ["work"]


def test_without_the_setting_no_request_is_shed(make_app: Callable[..., Flask]) -> None:
    app = make_app(RATELIMIT_ENABLED=False)
    app.add_url_rule("/work", "work", lambda: "done")
    Resilience(app)
    answer = app.test_client().get("/work", headers={"X-Request-Start": stamp(3600)})
    assert answer.status_code == 200


@pytest.mark.parametrize("value", [0, -1, "1s", True])
def test_a_wrong_limit_is_refused_at_init_app(
    make_app: Callable[..., Flask], value: object
) -> None:
    with pytest.raises(ConfigurationError, match="RESILIENCE_MAX_QUEUE_TIME"):
        Resilience(make_app(RESILIENCE_MAX_QUEUE_TIME=value))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("t=1700000000.5", 1700000000.5),
        ("1700000000500", 1700000000.5),
        ("t=1700000000500000", 1700000000.5),
        (" t=1700000000 ", 1700000000.0),
        ("t=", None),
        ("t=nan", None),
        ("t=-5", None),
        ("0", None),
        ("t=1e400", None),
    ],
)
def test_arrival_time_reads_every_unit_and_ignores_nonsense(
    header: str, expected: float | None
) -> None:
    result = arrival_time(header)
    if expected is None:
        assert result is None
    else:
        assert result is not None and math.isclose(result, expected)


REQUEST_SIGNALS = (
    request_started,
    request_finished,
    request_tearing_down,
    appcontext_pushed,
    appcontext_popped,
    appcontext_tearing_down,
)


def shed(app: Flask, **headers: str) -> TestResponse:
    return app.test_client().get("/work", headers={"X-Request-Start": stamp(3), **headers})


def looked_at(answer: TestResponse) -> tuple[object, ...]:
    """What a client sees of a shed answer, apart from the values of one request."""
    body = answer.get_json()
    return (
        answer.status_code,
        answer.mimetype,
        answer.headers["Retry-After"],
        answer.headers["Cache-Control"],
        answer.headers["X-Request-ID"] == body["request_id"],
        sorted(body),
        body["type"],
        body["instance"],
    )


def test_an_answer_given_before_flask_is_the_one_given_after_the_hooks(
    make_app: Callable[..., Flask],
) -> None:
    quiet = make_app(RESILIENCE_MAX_QUEUE_TIME=0.5, RATELIMIT_ENABLED=False)
    hooked = make_app(RESILIENCE_MAX_QUEUE_TIME=0.5, RATELIMIT_ENABLED=False)
    opened: list[Flask] = []

    class CountingSessions(SecureCookieSessionInterface):
        def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
            opened.append(app)
            return super().open_session(app, request)

    for app in (quiet, hooked):
        app.add_url_rule("/work", "work", lambda: "done")
        app.session_interface = CountingSessions()

    @hooked.after_request
    def tag(response: Response) -> Response:
        response.headers["X-Seen-By-The-App"] = "yes"
        return response

    for app in (quiet, hooked):
        Resilience(app)
    # A listener of Flask's signals makes every refusal go through Flask, and some
    # stay connected for the rest of the process (sentry-sdk's, once it was set up).
    with ExitStack() as nobody_listens:
        for signal in REQUEST_SIGNALS:
            nobody_listens.enter_context(signal.muted())
        before_flask, through_flask = shed(quiet), shed(hooked)

    assert "X-Seen-By-The-App" not in before_flask.headers
    assert through_flask.headers["X-Seen-By-The-App"] == "yes"  # the app's hook ran
    assert looked_at(before_flask) == looked_at(through_flask)
    assert looked_at(before_flask)[:2] == (503, "application/problem+json")
    # Answered before Flask, the quiet app's refusal opened no session, nor anything else.
    assert opened == [hooked]


def test_the_apps_handler_answers_a_shed_request(make_app: Callable[..., Flask]) -> None:
    app = make_app(RESILIENCE_MAX_QUEUE_TIME=0.5, RATELIMIT_ENABLED=False)
    app.add_url_rule("/work", "work", lambda: "done")

    @app.errorhandler(503)
    def busy(error: Exception) -> tuple[str, int]:
        return "busy, come back", 503

    Resilience(app)
    answer = shed(app)
    assert (answer.status_code, answer.get_data(as_text=True)) == (503, "busy, come back")


def test_listeners_of_flasks_request_signals_hear_a_shed_request(
    shedding_app: tuple[Flask, list[str]],
) -> None:
    app, served = shedding_app
    heard: list[str] = []

    def started(sender: Flask, **_: object) -> None:
        heard.append("started")

    def finished(sender: Flask, response: Response, **_: object) -> None:
        heard.append(f"finished {response.status_code}")

    with request_started.connected_to(started, app), request_finished.connected_to(finished, app):
        answer = shed(app)
    assert answer.status_code == 503
    assert heard == ["started", "finished 503"]
    assert served == []


def test_a_browser_gets_the_page_and_the_log_line_names_the_request(
    shedding_app: tuple[Flask, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = shedding_app
    with caplog.at_level(logging.INFO):
        answer = shed(app, Accept="text/html,*/*;q=0.8", **{"X-Forwarded-For": "203.0.113.9"})
    assert answer.status_code == 503
    assert answer.mimetype == "text/html"
    request_id = answer.headers["X-Request-ID"]
    assert request_id in answer.get_data(as_text=True)
    records = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert len(records) == 1
    record = records[0]
    assert (record.levelno, record.method, record.path, record.status) == (  # type: ignore[attr-defined]
        logging.WARNING,
        "GET",
        "/work",
        503,
    )
    assert record.name == f"{app.name}.flask_resilience"
    assert record.request["headers"]["X-Forwarded-For"] == "203.0.113.9"  # type: ignore[attr-defined]
    assert app.test_client().get("/work").status_code == 200
