"""httpx_client and async_httpx_client: httpx within the deadline, carrying the request's ids."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from flask import Flask, jsonify

from flask_resilience import RequestDeadlineExceeded, Resilience, request_timeout
from flask_resilience.outbound import async_httpx_client, httpx_client

from .upstream import UpstreamServer

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def httpx_app(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack, **config: Any
) -> Flask:
    app = make_app(**config)
    Resilience(app)
    client = closing.enter_context(httpx_client())
    app.config["errors"] = errors = []

    @app.get("/sync/<path:path>")
    @request_timeout(1)
    def sync_call(path: str) -> Any:
        try:
            return client.get(f"{upstream.url}/{path}").text
        except RequestDeadlineExceeded as error:
            errors.append(error)
            raise

    @app.get("/async/<path:path>")
    @request_timeout(1)
    async def async_call(path: str) -> Any:
        async with async_httpx_client() as async_client:
            try:
                return (await async_client.get(f"{upstream.url}/{path}")).text
            except RequestDeadlineExceeded as error:
                errors.append(error)
                raise

    @app.get("/own-timeout")
    @request_timeout(5)
    def own_timeout() -> Any:
        started = time.monotonic()
        try:
            client.get(f"{upstream.url}/silent", timeout=0.2)
        except httpx.TimeoutException as error:
            return jsonify(error=type(error).__name__, took=time.monotonic() - started)
        return "answered"

    @app.get("/late")
    @request_timeout(0.1)
    def late() -> Any:
        time.sleep(0.15)
        return client.get(f"{upstream.url}/ok").text

    @app.get("/headers")
    def headers() -> Any:
        return jsonify(client.get(f"{upstream.url}/ok").json())

    return app


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_silent_service_under_a_1_s_deadline_is_a_504_within_1_2_s(
    make_app: Callable[..., Flask], upstream: UpstreamServer, kind: str, closing: ExitStack
) -> None:
    app = httpx_app(make_app, upstream, closing)

    started = time.monotonic()
    response = app.test_client().get(f"/{kind}/silent")

    assert response.status_code == 504
    detail = response.get_json()["detail"]
    assert detail == "An outbound call did not finish before the request's deadline."
    assert time.monotonic() - started <= 1.2
    assert upstream.hits("/silent") == 1
    [error] = app.config["errors"]
    assert isinstance(error.__cause__, httpx.ReadTimeout)


def test_the_calls_own_timeout_stays_httpx_timeout(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    response = httpx_app(make_app, upstream, closing).test_client().get("/own-timeout")

    assert response.get_json()["error"] == "ReadTimeout"
    assert 0.2 <= response.get_json()["took"] < 0.6


def test_with_no_time_left_nothing_is_sent(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    response = httpx_app(make_app, upstream, closing).test_client().get("/late")

    assert response.status_code == 504
    assert upstream.record.arrivals == []


def test_a_call_carries_the_request_id_and_the_incoming_trace(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    app = httpx_app(make_app, upstream, closing)

    response = app.test_client().get("/headers", headers={"traceparent": INCOMING})

    sent = {name.lower(): value for name, value in response.get_json().items()}
    assert sent["x-request-id"] == response.headers["X-Request-ID"]
    match = TRACEPARENT.fullmatch(sent["traceparent"])
    assert match, sent["traceparent"]
    assert (match[1], match[3]) == ("0af7651916cd43dd8448eb211c80319c", "00")
    assert match[2] != "b7ad6b7169203331"


def test_outside_a_request_no_header_and_the_settings_timeout(
    make_app: Callable[..., Flask], upstream: UpstreamServer, closing: ExitStack
) -> None:
    app = make_app(RESILIENCE_OUTBOUND_TIMEOUT=0.3)
    Resilience(app)
    client = httpx_client()  # made outside the app: the timeout is read at each call

    with app.app_context():
        sent = {name.lower() for name in client.get(f"{upstream.url}/ok").json()}
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"{upstream.url}/silent")
        took = time.monotonic() - started

    assert "traceparent" not in sent
    assert "x-request-id" not in sent
    assert 0.3 <= took < 0.7


def test_the_clients_own_timeout_comes_before_the_setting(upstream: UpstreamServer) -> None:
    with httpx_client(timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"{upstream.url}/silent")
    assert time.monotonic() - started < 0.6
