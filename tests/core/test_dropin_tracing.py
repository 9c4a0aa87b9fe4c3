"""OpenTelemetry's Flask instrumentation keeps a span for every answer of an app with the extension.

The instrumentation starts its server span in a ``before_request`` hook and fills in
the status when the response starts. An answer given by an earlier hook (a request
shed, a session expired, a rate limit hit) runs before that hook and leaves no span,
so each answer the extension may give is checked here, in both set-up orders:
``FlaskInstrumentor().instrument_app(app)`` before and after ``init_app``.

Real parts only: the OpenTelemetry SDK with an in-memory exporter on a tracer
provider of the test's own (the global one is never set), and for the database
outage a PostgreSQL URL on a port where nothing listens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from flask_resilience import Resilience
from flask_resilience.guards.session_interface import SEEN, STARTED
from tests.support.servers import free_port

INSTRUMENTED_FIRST = "instrumented-first"
RESILIENCE_FIRST = "resilience-first"

# The old HTTP semantic conventions write the first name, the stable ones the
# second (OTEL_SEMCONV_STABILITY_OPT_IN=http); "http/dup" writes both.
STATUS_ATTRIBUTES = ("http.response.status_code", "http.status_code")

# Monitoring off in every app here: it has nothing to do with spans.
QUIET = {"RESILIENCE_MONITOR_ENABLED": False}


class Tracing:
    """The set-up order of a test, and the server spans of the apps it instruments."""

    def __init__(self, order: str) -> None:
        self.order = order
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.instrumented: list[Flask] = []

    def set_up(self, app: Flask, resilience: Resilience, **init: Any) -> None:
        """Instrument ``app`` and initialise the extension on it, in the test's order."""
        if self.order == INSTRUMENTED_FIRST:
            self.instrument(app)
            resilience.init_app(app, **init)
        else:
            resilience.init_app(app, **init)
            self.instrument(app)

    def instrument(self, app: Flask) -> None:
        FlaskInstrumentor().instrument_app(app, tracer_provider=self.provider)
        self.instrumented.append(app)

    def server_spans(self) -> list[ReadableSpan]:
        """The finished server spans, oldest first."""
        spans = self.exporter.get_finished_spans()
        return [span for span in spans if span.kind is SpanKind.SERVER]

    def statuses(self) -> list[int | None]:
        """The HTTP status each finished server span recorded, oldest first."""
        return [status_of(span) for span in self.server_spans()]

    def close(self) -> None:
        for app in self.instrumented:
            FlaskInstrumentor.uninstrument_app(app)
        self.provider.shutdown()
        self.exporter.clear()


def status_of(span: ReadableSpan) -> int | None:
    """The response status a server span recorded, under either attribute name."""
    attributes = span.attributes or {}
    for name in STATUS_ATTRIBUTES:
        value = attributes.get(name)
        if value is not None:
            assert isinstance(value, int), f"{name} is {value!r}"
            return value
    return None


@pytest.fixture(params=[INSTRUMENTED_FIRST, RESILIENCE_FIRST])
def tracing(request: pytest.FixtureRequest) -> Iterator[Tracing]:
    tracing = Tracing(request.param)
    try:
        yield tracing
    finally:
        tracing.close()


def queued_since(seconds_ago: float) -> dict[str, str]:
    """The X-Request-Start header of a request that reached the proxy ``seconds_ago``."""
    return {"X-Request-Start": f"t={time.time() - seconds_ago:.6f}"}


def test_a_served_request_has_its_span(make_app: Callable[..., Flask], tracing: Tracing) -> None:
    """The control: a plain 200 is traced in either order."""
    app = make_app(**QUIET)
    app.add_url_rule("/work", "work", lambda: "done")
    tracing.set_up(app, Resilience())

    assert app.test_client().get("/work").status_code == 200
    assert tracing.statuses() == [200]


def test_a_shed_request_has_its_503_span(make_app: Callable[..., Flask], tracing: Tracing) -> None:
    app = make_app(RESILIENCE_MAX_QUEUE_TIME=0.5, **QUIET)
    served: list[str] = []

    @app.get("/work")
    def work() -> str:
        served.append("work")
        return "done"

    tracing.set_up(app, Resilience())

    response = app.test_client().get("/work", headers=queued_since(30))
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert served == []
    assert tracing.statuses() == [503]


def test_an_expired_session_has_its_401_span(
    make_app: Callable[..., Flask], tracing: Tracing
) -> None:
    app = make_app(RESILIENCE_SESSION_IDLE_TIMEOUT=60, **QUIET)
    app.add_url_rule("/api/ping", "ping", lambda: "pong")
    tracing.set_up(app, Resilience())
    client = app.test_client()
    an_hour_ago = int(time.time()) - 3600
    with client.session_transaction() as sess:
        sess.update({"uid": 1, STARTED: an_hour_ago, SEEN: an_hour_ago})

    response = client.get("/api/ping", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.get_json(force=True)["reason"] == "session-expired"
    assert tracing.statuses() == [401]


@pytest.mark.parametrize("limit", ["default-limit", "route-limit"])
def test_a_rate_limited_request_has_its_429_span(
    make_app: Callable[..., Flask], tracing: Tracing, limit: str
) -> None:
    """The app's default limit is checked before the view, a view's own limit in it."""
    config = {"RATELIMIT_DEFAULT": "2 per minute"} if limit == "default-limit" else {}
    app = make_app(**config, **QUIET)
    resilience = Resilience()

    def work() -> str:
        return "done"

    if limit == "route-limit":
        work = resilience.limit("2 per minute")(work)
    app.add_url_rule("/work", "work", work)
    tracing.set_up(app, resilience)
    client = app.test_client()

    assert [client.get("/work").status_code for _ in range(3)] == [200, 200, 429]
    assert tracing.statuses() == [200, 200, 429]


@pytest.mark.parametrize("hook_registered", ["before-init", "after-init"])
def test_the_rate_limit_runs_before_the_apps_own_hooks(
    make_app: Callable[..., Flask], tracing: Tracing, hook_registered: str
) -> None:
    """A request refused by the app's default limit costs the app nothing: none of its hooks ran.

    (A limit decorating a view is checked by Flask-Limiter when the view is called,
    after every hook: only the default limits are checked in a hook.)
    """
    app = make_app(RATELIMIT_DEFAULT="2 per minute", **QUIET)
    app.add_url_rule("/work", "work", lambda: "done")
    hook_calls: list[str] = []

    def count_call() -> None:
        hook_calls.append("called")

    if hook_registered == "before-init":
        app.before_request(count_call)
    tracing.set_up(app, Resilience())
    if hook_registered == "after-init":
        app.before_request(count_call)
    client = app.test_client()

    assert [client.get("/work").status_code for _ in range(3)] == [200, 200, 429]
    assert len(hook_calls) == 2, "the app's hook ran for the request answered 429"


def test_an_unknown_route_has_its_404_span(
    make_app: Callable[..., Flask], tracing: Tracing
) -> None:
    app = make_app(**QUIET)
    tracing.set_up(app, Resilience())

    response = app.test_client().get("/nowhere")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert tracing.statuses() == [404]


def test_a_crashing_view_has_its_500_span(make_app: Callable[..., Flask], tracing: Tracing) -> None:
    app = make_app(**QUIET)

    @app.get("/crash")
    def crash() -> str:
        raise RuntimeError("the view is broken")

    tracing.set_up(app, Resilience())

    response = app.test_client().get("/crash")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert tracing.statuses() == [500]


def test_a_database_that_is_down_has_its_503_span(
    make_app: Callable[..., Flask], tracing: Tracing
) -> None:
    # Nothing listens on that port: every connection attempt is refused.
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    app = make_app(SQLALCHEMY_DATABASE_URI=url, **QUIET)
    db = SQLAlchemy(app)

    @app.get("/one")
    def one() -> str:
        return str(db.session.execute(sa.text("SELECT 1")).scalar())

    tracing.set_up(app, Resilience(), db=db)

    response = app.test_client().get("/one")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert tracing.statuses() == [503]
