"""W3C trace context: one trace id on a request's log records, problem bodies and calls.

Without OpenTelemetry the extension reads the incoming ``traceparent`` itself; with
it (the real SDK, an in-memory exporter on a tracer provider of the test's own,
the Flask instrumentation) the active span's ids are used, and what the extension
did is on that span as events.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from flask import Flask, jsonify
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from flask_resilience import Resilience, circuit_breaker, request_timeout, retry_on_failure
from flask_resilience.outbound import Session
from tests.outbound.upstream import UpstreamServer, upstream_server
from tests.support.paths import ROOT

INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
INCOMING = f"00-{INCOMING_TRACE}-{CALLER_SPAN}-01"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
SPAN_ID = re.compile(r"[0-9a-f]{16}")


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with upstream_server() as server:
        yield server


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO):
        yield caplog


def traced_app(make_app: Callable[..., Flask], upstream: UpstreamServer, stack: ExitStack) -> Flask:
    """Views that log, fail, call out, retry, hit a breaker and overrun a deadline."""
    app = make_app(RESILIENCE_MAX_QUEUE_TIME=0.5, RESILIENCE_MONITOR_ENABLED=False)
    session = stack.enter_context(Session())
    failures = {"flaky": 0}

    @app.get("/logged")
    def logged() -> str:
        app.logger.info("a line of the view")
        return "logged"

    @app.get("/broken")
    def broken() -> str:
        raise RuntimeError("a bug")

    @app.get("/call")
    def call() -> Any:
        return jsonify(session.get(f"{upstream.url}/ok").json())

    @retry_on_failure(max_retries=2, delay=0.01, exceptions=(ConnectionError,), name="flaky")
    def flaky() -> str:
        failures["flaky"] += 1
        if failures["flaky"] == 1:
            raise ConnectionError("once")
        return "second time"

    @app.get("/retried")
    def retried() -> str:
        return flaky()

    @circuit_breaker("partner", fail_max=1, reset_timeout=60)
    def partner() -> str:
        raise ConnectionError("partner down")

    @app.get("/partner")
    def call_partner() -> str:
        try:
            return partner()
        except ConnectionError:
            return "failed once"

    @app.get("/late")
    @request_timeout(0.05)
    def late() -> str:
        time.sleep(0.1)
        return session.get(f"{upstream.url}/ok").text

    Resilience(app)
    return app


class Tracing:
    """The Flask instrumentation on one app, its spans kept in memory."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        FlaskInstrumentor().instrument_app(app, tracer_provider=self.provider)

    def server_span(self) -> ReadableSpan:
        """The only server span finished so far."""
        spans = [s for s in self.exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
        assert len(spans) == 1, [span.name for span in spans]
        return spans[0]

    def events(self) -> dict[str, dict[str, Any]]:
        """The server span's events by name, with their attributes."""
        return {event.name: dict(event.attributes or {}) for event in self.server_span().events}

    def close(self) -> None:
        FlaskInstrumentor.uninstrument_app(self.app)
        self.provider.shutdown()


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as closing:
        yield closing


@pytest.fixture
def app(make_app: Callable[..., Flask], upstream: UpstreamServer, stack: ExitStack) -> Flask:
    return traced_app(make_app, upstream, stack)


@pytest.fixture
def tracing(app: Flask) -> Iterator[Tracing]:
    traced = Tracing(app)
    yield traced
    traced.close()


def ids_of(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def records_of(logs: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    # This request's records only: a thread of another test's app may log meanwhile.
    found = [r for r in logs.records if getattr(r, "request_id", None) == request_id]
    assert found, [record.getMessage() for record in logs.records]
    return found


# --- Without OpenTelemetry's instrumentation --------------------------------------


def test_an_incoming_trace_names_the_request_and_its_log_records(
    app: Flask, logs: pytest.LogCaptureFixture
) -> None:
    response = app.test_client().get("/logged", headers={"traceparent": INCOMING})

    # No X-Request-ID came: the trace id is the request id, one id for both.
    assert response.headers["X-Request-ID"] == INCOMING_TRACE
    records = records_of(logs, INCOMING_TRACE)
    assert {getattr(record, "trace_id", None) for record in records} == {INCOMING_TRACE}
    spans = {getattr(record, "span_id", None) for record in records}
    assert len(spans) == 1
    span = spans.pop()
    assert isinstance(span, str) and SPAN_ID.fullmatch(span)
    assert span != CALLER_SPAN  # the request's own span, whose parent is the caller's


def test_an_incoming_request_id_is_kept_beside_the_trace(
    app: Flask, logs: pytest.LogCaptureFixture
) -> None:
    response = app.test_client().get(
        "/logged", headers={"traceparent": INCOMING, "X-Request-ID": "edge-7"}
    )

    assert response.headers["X-Request-ID"] == "edge-7"
    records = records_of(logs, "edge-7")
    assert {getattr(record, "trace_id", None) for record in records} == {INCOMING_TRACE}


def test_without_a_trace_the_request_id_is_the_trace_id(
    app: Flask, logs: pytest.LogCaptureFixture
) -> None:
    response = app.test_client().get("/logged", headers={"traceparent": "00-zz-zz-01"})

    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    records = records_of(logs, request_id)
    assert {getattr(record, "trace_id", None) for record in records} == {request_id}


def test_a_problem_body_carries_the_trace_id(app: Flask, logs: pytest.LogCaptureFixture) -> None:
    response = app.test_client().get("/broken", headers={"traceparent": INCOMING})

    assert response.status_code == 500
    body = response.get_json()
    assert body["trace_id"] == INCOMING_TRACE
    assert body["request_id"] == INCOMING_TRACE
    # The crash's one record names the same trace.
    errors = [r for r in records_of(logs, INCOMING_TRACE) if r.levelno >= logging.ERROR]
    assert [getattr(record, "trace_id", None) for record in errors] == [INCOMING_TRACE]


def test_an_outbound_call_continues_the_incoming_trace(app: Flask) -> None:
    sent = app.test_client().get("/call", headers={"traceparent": INCOMING}).get_json()

    match = TRACEPARENT.fullmatch(sent["traceparent"])
    assert match, sent
    assert (match[1], match[3]) == (INCOMING_TRACE, "01")
    assert match[2] != CALLER_SPAN


# --- With the OpenTelemetry SDK and the Flask instrumentation ---------------------


def test_the_active_span_is_on_the_log_records_the_problem_and_the_call(
    app: Flask, tracing: Tracing, logs: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()

    logged = client.get("/logged", headers={"traceparent": INCOMING})
    trace_id, span_id = ids_of(tracing.server_span())
    assert trace_id == INCOMING_TRACE  # the instrumentation continued the caller's trace
    records = records_of(logs, logged.headers["X-Request-ID"])
    assert {(getattr(r, "trace_id", None), getattr(r, "span_id", None)) for r in records} == {
        (trace_id, span_id)
    }
    tracing.exporter.clear()

    broken = client.get("/broken", headers={"traceparent": INCOMING})
    assert broken.get_json()["trace_id"] == ids_of(tracing.server_span())[0] == INCOMING_TRACE
    tracing.exporter.clear()

    sent = client.get("/call", headers={"traceparent": INCOMING}).get_json()
    trace_id, span_id = ids_of(tracing.server_span())
    # The call's parent is the request's server span.
    assert sent["traceparent"] == f"00-{trace_id}-{span_id}-01"


def test_a_retry_is_an_event_on_the_request_span(app: Flask, tracing: Tracing) -> None:
    assert app.test_client().get("/retried").get_data(as_text=True) == "second time"

    event = tracing.events()["resilience.retry"]
    assert event["name"] == "flaky"
    assert event["attempt"] == 1


def test_a_breaker_refusal_is_an_event_on_the_request_span(app: Flask, tracing: Tracing) -> None:
    client = app.test_client()
    assert client.get("/partner").get_data(as_text=True) == "failed once"
    opened = tracing.events()["resilience.breaker_state_changed"]
    assert (opened["name"], opened["new"]) == ("partner", "open")
    tracing.exporter.clear()

    refused = client.get("/partner")

    assert refused.status_code == 503
    event = tracing.events()["resilience.dependency_unavailable"]
    assert (event["dependency"], event["name"]) == ("breaker", "partner")


def test_a_shed_request_is_an_event_on_its_span(app: Flask, tracing: Tracing) -> None:
    queued = f"t={time.time() - 3:.6f}"

    answer = app.test_client().get("/logged", headers={"X-Request-Start": queued})

    assert answer.status_code == 503
    assert tracing.events()["resilience.request_shed"]["waited"] >= 3


def test_a_deadline_is_an_event_on_the_request_span(app: Flask, tracing: Tracing) -> None:
    answer = app.test_client().get("/late")

    assert answer.status_code == 504
    assert tracing.events()["resilience.deadline_exceeded"]["where"] == "outbound"


# --- An app without OpenTelemetry -------------------------------------------------

WITHOUT_OPENTELEMETRY = """
import json, sys
from flask import Flask
from flask_resilience import Resilience

app = Flask("plain")
app.config.update(
    SECRET_KEY="a-key-long-enough-for-the-session-checks", RESILIENCE_MONITOR_ENABLED=False
)
Resilience(app)

@app.get("/")
def index():
    raise RuntimeError("a bug")

answer = app.test_client().get("/", headers={"traceparent": sys.argv[1]})
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")
print(json.dumps({"body": answer.get_json(), "loaded": loaded}))
"""


def test_without_opentelemetry_nothing_of_it_is_imported() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENTELEMETRY, INCOMING],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    result = json.loads(done.stdout.splitlines()[-1])
    assert result["loaded"] == []
    assert result["body"]["trace_id"] == INCOMING_TRACE
