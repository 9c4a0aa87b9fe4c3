"""Sentry's Flask integration reports what an app with the extension really failed at.

A crash is one error event; a database outage, answered 503 by the extension, is
no unhandled crash; a failure a ``safe_route_handler`` answered with its fallback
is still reported once; and every event a request produces carries that
request's id as the tag ``request_id``, the id in its ``X-Request-ID`` header.

Real parts only: ``sentry_sdk.init`` with the Flask integration and the default
ones (logging, dedupe...) as an app has them, its envelopes kept in memory by a
transport of the test's own (nothing leaves the machine), and for the outage a
PostgreSQL URL on a port where nothing listens.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
import sentry_sdk
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.scope import Scope
from sentry_sdk.transport import Transport
from werkzeug.test import TestResponse

from flask_resilience import Resilience, safe_route_handler
from tests.support.servers import free_port

# Never dialled: the transport below sends nothing.
DSN = "https://public@127.0.0.1/1"
REQUEST_ID_TAG = "request_id"
FALLBACK = {"items": [], "stale": True}
ERRORS = frozenset({"error", "fatal"})
SENTRY_FIRST = "sentry-first"
RESILIENCE_FIRST = "resilience-first"

Event = dict[str, Any]


class RecordingTransport(Transport):
    """Keeps the envelopes the SDK would send, in memory."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[Event]:
        """The events (errors, messages) sent so far; sessions and the like left out."""
        found: list[Event] = []
        for envelope in self.envelopes:
            for item in envelope.items:
                event = item.get_event()
                if event is not None:
                    found.append(cast(Event, event))
        return found

    def clear(self) -> None:
        self.envelopes.clear()


@pytest.fixture
def sentry() -> Iterator[RecordingTransport]:
    """A Sentry client recording into memory for this test only."""
    transport = RecordingTransport()
    with sentry_sdk.isolation_scope():
        sentry_sdk.init(
            dsn=DSN,
            transport=transport,
            integrations=[FlaskIntegration()],
            # Only the integrations an app with Flask always gets: no others
            # patching libraries for the rest of the test session.
            auto_enabling_integrations=False,
            release="flask-resilience-tests",
        )
        try:
            yield transport
        finally:
            sentry_sdk.get_client().close()
            Scope.get_global_scope().set_client(None)


def error_events(events: list[Event]) -> list[Event]:
    """The events Sentry lists as errors: an exception, or a message at error level."""
    return [event for event in events if "exception" in event or event.get("level") in ERRORS]


def exceptions_of(event: Event) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = event.get("exception", {}).get("values", [])
    return values


def is_unhandled(event: Event) -> bool:
    """Whether Sentry shows the event as a crash: a mechanism says ``handled: false``."""
    return any(value.get("mechanism", {}).get("handled") is False for value in exceptions_of(event))


def exception_types(event: Event) -> list[str]:
    return [str(value.get("type")) for value in exceptions_of(event)]


def describe(events: list[Event]) -> str:
    """One line per event, for assertion messages."""
    return "; ".join(
        f"level={event.get('level')} exceptions={exception_types(event)}"
        f" mechanisms={[value.get('mechanism') for value in exceptions_of(event)]}"
        f" message={event.get('message') or event.get('logentry')}"
        f" tags={event.get('tags')}"
        for event in events
    )


@pytest.fixture(params=[SENTRY_FIRST, RESILIENCE_FIRST])
def order(request: pytest.FixtureRequest) -> str:
    """Sentry is initialised before the app is made (as its documentation has it), or
    after the extension was set up on it."""
    order: str = request.param
    return order


@pytest.fixture
def app_config(
    app_config: dict[str, Any], order: str, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """A database URL where nothing listens: every connection attempt is refused."""
    if order == SENTRY_FIRST:
        request.getfixturevalue("sentry")
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    return {"SQLALCHEMY_DATABASE_URI": url, "RESILIENCE_MONITOR_ENABLED": False, **app_config}


@pytest.fixture
def app(app: Flask) -> Flask:
    """The chain's app with a view for each kind of failure, its database down for good."""
    db = SQLAlchemy(app)

    @app.get("/crash")
    def crash() -> str:
        raise RuntimeError("the view is broken")

    @app.get("/outage")
    def outage() -> str:
        return str(db.session.execute(sa.text("SELECT 1")).scalar())

    @app.get("/fallback")
    @safe_route_handler(fallback=lambda error: (FALLBACK, 200))
    def fallback() -> str:
        raise RuntimeError("the report is broken")

    @app.get("/message")
    def message() -> str:
        sentry_sdk.capture_message("the report is late")
        return "reported"

    @app.get("/logged")
    def logged() -> str:
        app.logger.error("the cache is cold")
        return "logged"

    return app


@pytest.fixture
def resilience(app: Flask, order: str, request: pytest.FixtureRequest) -> Resilience:
    extension = Resilience(app, db=app.extensions["sqlalchemy"])
    if order == RESILIENCE_FIRST:
        request.getfixturevalue("sentry")
    return extension


def test_a_crash_is_one_error_event(client: FlaskClient, sentry: RecordingTransport) -> None:
    response = client.get("/crash")
    assert response.status_code == 500
    errors = error_events(sentry.events())
    assert len(errors) == 1, describe(errors)
    assert exception_types(errors[0])[-1] == "RuntimeError"


def test_an_outage_answered_503_is_no_unhandled_error(
    client: FlaskClient, sentry: RecordingTransport
) -> None:
    responses = [client.get("/outage") for _ in range(3)]
    assert [response.status_code for response in responses] == [503] * 3
    events = sentry.events()
    crashes = [event for event in events if is_unhandled(event)]
    assert crashes == [], describe(crashes)
    # Whatever else the outage reported carries the id of its request.
    ids = {response.headers["X-Request-ID"] for response in responses}
    assert {event.get("tags", {}).get(REQUEST_ID_TAG) for event in events} <= ids, describe(events)


def test_a_failure_answered_by_the_fallback_is_still_one_event(
    client: FlaskClient, sentry: RecordingTransport
) -> None:
    response = client.get("/fallback")
    assert response.status_code == 200
    assert response.get_json() == FALLBACK
    errors = error_events(sentry.events())
    assert len(errors) == 1, describe(errors)
    assert exception_types(errors[0])[-1] == "RuntimeError"


@pytest.mark.parametrize("path", ["/crash", "/fallback", "/message", "/logged"])
@pytest.mark.parametrize("request_id", ["sent-by-the-client", "generated"])
def test_every_event_of_a_request_carries_its_request_id(
    client: FlaskClient, sentry: RecordingTransport, path: str, request_id: str
) -> None:
    def send(n: int) -> TestResponse:
        sent = request_id == "sent-by-the-client"
        return client.get(path, headers={"X-Request-ID": f"drop-in-{n}"} if sent else {})

    # A request before: its id must not stick to the events of the next one.
    first = send(1)
    sentry.clear()
    response = send(2)
    assert response.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    if request_id == "sent-by-the-client":
        assert response.headers["X-Request-ID"] == "drop-in-2"
    events = sentry.events()
    assert events, f"{path} produced no event"
    tags = [event.get("tags", {}).get(REQUEST_ID_TAG) for event in events]
    assert tags == [response.headers["X-Request-ID"]] * len(events), describe(events)


def test_an_event_outside_a_request_has_no_request_id(
    client: FlaskClient, sentry: RecordingTransport
) -> None:
    client.get("/crash")
    sentry.clear()
    sentry_sdk.capture_message("a job outside any request")
    [event] = sentry.events()
    assert REQUEST_ID_TAG not in event.get("tags", {}), describe([event])
