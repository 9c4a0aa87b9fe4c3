"""retry_on_failure knows the time: Retry-After, and no wait past the deadline."""

from __future__ import annotations

import email.utils
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
from flask import Flask, jsonify

from flask_resilience import Resilience, request_timeout, retry_on_failure
from flask_resilience.retry import parse_retry_after, retry_after
from tests.breakers.helpers import unique
from tests.outbound.upstream import UpstreamServer


def gaps(upstream: UpstreamServer, path: str) -> list[float]:
    times = [arrival.at for arrival in upstream.record.of(path)]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_a_503s_retry_after_in_seconds_is_waited_for(upstream: UpstreamServer) -> None:
    @retry_on_failure(max_retries=2, delay=0.01, name=unique("retry-after"))
    def fetch() -> str:
        with requests.Session() as session:
            response = session.get(f"{upstream.url}/busy/1?after=1", timeout=5)
            response.raise_for_status()
            return response.text

    assert fetch() == "done"

    [gap] = gaps(upstream, "/busy/1")
    assert 1.0 <= gap < 1.5  # not the 10 ms backoff delay


def test_an_httpx_429_or_503_with_an_http_date_is_waited_for(upstream: UpstreamServer) -> None:
    @retry_on_failure(max_retries=2, delay=0.01, name=unique("retry-after"))
    def fetch() -> str:
        with httpx.Client(timeout=5) as client:
            response = client.get(f"{upstream.url}/busy/1?date=2")
            response.raise_for_status()  # returns the response from httpx 0.24.1 only
            return response.text

    assert fetch() == "done"

    [gap] = gaps(upstream, "/busy/1")
    assert 1.0 <= gap < 2.5  # an HTTP date has whole seconds: 2 s ahead is 1 to 2 s away


def test_a_retry_after_longer_than_max_delay_ends_the_retries(
    upstream: UpstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    @retry_on_failure(max_retries=3, delay=0.01, max_delay=0.5, name=unique("retry-after"))
    def fetch() -> None:
        requests.get(f"{upstream.url}/busy/5?after=2", timeout=5).raise_for_status()

    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    with pytest.raises(requests.HTTPError):
        fetch()

    assert time.monotonic() - started < 0.5
    assert upstream.hits("/busy/5") == 1
    assert "the server asks to wait 2 s, over max_delay (0.5 s)" in caplog.text


def test_retry_after_is_read_only_from_429_and_503(upstream: UpstreamServer) -> None:
    failed = requests.get(f"{upstream.url}/fail", timeout=5)
    busy = requests.get(f"{upstream.url}/busy/1?after=7", timeout=5)

    with pytest.raises(requests.HTTPError) as on_500:
        failed.raise_for_status()
    with pytest.raises(requests.HTTPError) as on_503:
        busy.raise_for_status()

    assert retry_after(on_500.value) is None
    assert retry_after(on_503.value) == 7.0
    assert retry_after(ConnectionError("no answer")) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        (email.utils.formatdate(1_000_030, usegmt=True), 30.0),
        (email.utils.formatdate(999_000, usegmt=True), 0.0),  # passed already
        (email.utils.formatdate(1_000_045), 45.0),  # "-0000": UTC too
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=1_000_000) == expected


def deadline_app(make_app: Callable[..., Flask], upstream: UpstreamServer, delay: float) -> Flask:
    app = make_app()
    Resilience(app)

    @retry_on_failure(max_retries=2, delay=delay, jitter=False, name=unique("deadline"))
    def fetch() -> None:
        requests.get(f"{upstream.url}/fail", timeout=5).raise_for_status()

    @app.get("/")
    @request_timeout(1)
    def view() -> Any:
        started = time.monotonic()
        try:
            fetch()
        except requests.HTTPError:
            return jsonify(took=time.monotonic() - started)
        return "answered"

    return app


def test_a_retry_whose_wait_ends_past_the_deadline_is_not_made(
    make_app: Callable[..., Flask], upstream: UpstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    app = deadline_app(make_app, upstream, delay=2.0)

    response = app.test_client().get("/")

    assert response.get_json()["took"] < 0.5  # raised at once, not after waiting
    assert upstream.hits("/fail") == 1
    assert "would end after the deadline" in caplog.text


def test_retries_within_the_deadline_are_made(
    make_app: Callable[..., Flask], upstream: UpstreamServer
) -> None:
    app = deadline_app(make_app, upstream, delay=0.05)

    response = app.test_client().get("/")

    assert response.status_code == 200
    assert upstream.hits("/fail") == 3


def test_the_deadline_ends_the_waits_that_would_overrun_it(
    make_app: Callable[..., Flask], upstream: UpstreamServer
) -> None:
    # Waits of 0.4 s then 0.8 s: the first fits in the 1 s deadline, the second does not.
    app = deadline_app(make_app, upstream, delay=0.4)

    response = app.test_client().get("/")

    assert upstream.hits("/fail") == 2
    assert 0.4 <= response.get_json()["took"] < 0.9
