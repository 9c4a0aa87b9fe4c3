"""flask_resilience.outbound.Session: requests within the deadline, carrying the request's ids."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import pytest
import requests
from flask import Flask, jsonify

from flask_resilience import RequestDeadlineExceeded, Resilience, request_timeout
from flask_resilience.outbound import Session

from .upstream import UpstreamServer

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def outbound_app(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack, **config: Any
) -> Flask:
    """An app whose views call ``upstream`` through one Session, as an app would."""
    app = make_app(**config)
    Resilience(app)
    session = closing.enter_context(Session())
    app.config["errors"] = errors = []

    @app.get("/call/<path:path>")
    @request_timeout(1)
    def call(path: str) -> Any:
        try:
            response = session.get(f"{upstream.url}/{path}")
        except RequestDeadlineExceeded as error:
            errors.append(error)
            raise
        return response.text

    @app.get("/own-timeout")
    @request_timeout(5)
    def own_timeout() -> Any:
        started = time.monotonic()
        try:
            session.get(f"{upstream.url}/silent", timeout=0.2)
        except requests.Timeout as error:
            return jsonify(error=type(error).__name__, took=time.monotonic() - started)
        return "answered"

    @app.get("/late")
    @request_timeout(0.1)
    def late() -> Any:
        time.sleep(0.15)
        return session.get(f"{upstream.url}/ok").text

    @app.get("/twice")
    def twice() -> Any:
        first = session.get(f"{upstream.url}/ok").json()
        second = session.get(f"{upstream.url}/ok", headers={"X-Request-ID": "chosen"}).json()
        return jsonify(first=first, second=second)

    return app


def test_a_silent_service_under_a_1_s_deadline_is_a_504_within_1_2_s(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    app = outbound_app(make_app, upstream, closing)

    started = time.monotonic()
    response = app.test_client().get("/call/silent")
    took = time.monotonic() - started

    assert response.status_code == 504
    assert response.content_type == "application/problem+json"
    detail = response.get_json()["detail"]
    assert detail == "An outbound call did not finish before the request's deadline."
    assert 0.9 <= took <= 1.2
    assert upstream.hits("/silent") == 1
    [error] = app.config["errors"]
    assert isinstance(error.__cause__, requests.Timeout)  # requests' own error is the cause


def test_a_slow_service_under_a_1_s_deadline_is_a_504_within_1_2_s(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    app = outbound_app(make_app, upstream, closing)

    started = time.monotonic()
    response = app.test_client().get("/call/slow/3")

    assert response.status_code == 504
    assert time.monotonic() - started <= 1.2


def test_the_calls_own_timeout_stays_requests_timeout(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    app = outbound_app(make_app, upstream, closing)

    response = app.test_client().get("/own-timeout")

    assert response.get_json()["error"] == "ReadTimeout"
    assert 0.2 <= response.get_json()["took"] < 0.6


def test_with_no_time_left_nothing_is_sent(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    app = outbound_app(make_app, upstream, closing)

    response = app.test_client().get("/late")

    assert response.status_code == 504
    assert response.get_json()["detail"] == (
        "The request ran out of time before an outbound call could be made."
    )
    assert upstream.record.arrivals == []


def test_a_call_carries_the_request_id_and_the_request_span_of_the_incoming_trace(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    app = outbound_app(make_app, upstream, closing)

    response = app.test_client().get("/twice", headers={"traceparent": INCOMING})

    first, second = response.get_json()["first"], response.get_json()["second"]
    assert first["X-Request-ID"] == response.headers["X-Request-ID"]
    assert second["X-Request-ID"] == "chosen"  # a header the call set is kept
    spans = set()
    for sent in (first, second):
        match = TRACEPARENT.fullmatch(sent["traceparent"])
        assert match, sent["traceparent"]
        assert match[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert match[3] == "01"
        spans.add(match[2])
    # The request's own span is the parent of its calls, the span its log records name;
    # the caller's span is the request's parent, not reused.
    assert len(spans) == 1
    assert "00f067aa0ba902b7" not in spans


def test_without_an_incoming_trace_one_is_made_per_request(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    app = outbound_app(make_app, upstream, closing)
    client = app.test_client()

    traces = []
    for incoming in ({}, {"traceparent": "00-not-a-valid-trace-01"}):
        body = client.get("/twice", headers=incoming).get_json()
        first = TRACEPARENT.fullmatch(body["first"]["traceparent"])
        second = TRACEPARENT.fullmatch(body["second"]["traceparent"])
        assert first and second
        assert first[1] == second[1]  # one trace id for the request's calls
        assert first[3] == "01"
        assert first[1] != "0" * 32
        traces.append(first[1])
    assert traces[0] != traces[1]


def test_the_request_id_header_follows_the_setting(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    renamed = outbound_app(
        make_app, upstream, closing, RESILIENCE_REQUEST_ID_HEADER="X-Correlation-ID"
    )
    body = renamed.test_client().get("/twice").get_json()["first"]
    assert "X-Correlation-ID" in body
    assert "X-Request-ID" not in body

    off = outbound_app(make_app, upstream, closing, RESILIENCE_REQUEST_ID_HEADER=None)
    body = off.test_client().get("/twice").get_json()["first"]
    assert "X-Request-ID" not in body
    assert TRACEPARENT.fullmatch(body["traceparent"])


def test_outside_a_request_no_header_is_added_and_the_default_timeout_applies(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    app = make_app(RESILIENCE_OUTBOUND_TIMEOUT=0.3)
    Resilience(app)
    session = closing.enter_context(Session())

    with app.app_context():
        sent = session.get(f"{upstream.url}/ok").json()
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            session.get(f"{upstream.url}/silent")
        took = time.monotonic() - started

    assert "traceparent" not in sent
    assert "X-Request-ID" not in sent
    assert 0.3 <= took < 0.7


def test_the_sessions_own_timeout_comes_before_the_setting(
    upstream: UpstreamServer, closing: ExitStack
) -> None:
    session = closing.enter_context(Session(timeout=(1.0, 0.2)))  # no app: the default is 10 s

    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        session.get(f"{upstream.url}/silent")

    assert time.monotonic() - started < 0.6
