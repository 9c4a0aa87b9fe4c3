"""The outbound call against a real local HTTP server: success and each kind of failure."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import basic_auth

ALICE = basic_auth("alice@acme.test")
GREETING = "héllo from upstream " * 20


class UpstreamServer(ThreadingHTTPServer):
    release = threading.Event()
    hits: Counter[str]
    headers: list[dict[str, str]]


class Upstream(BaseHTTPRequestHandler):
    server: UpstreamServer

    def do_GET(self) -> None:
        self.server.hits[self.path] += 1
        self.server.headers.append(dict(self.headers.items()))
        if self.path == "/slow":
            self.server.release.wait(timeout=10)
        flaky_failure = self.path == "/flaky" and self.server.hits[self.path] == 1
        status = 503 if self.path == "/down" or flaky_failure else 200
        body = GREETING.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting, which is the point of /slow

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream_server() -> Iterator[UpstreamServer]:
    server = UpstreamServer(("127.0.0.1", 0), Upstream)
    server.release = threading.Event()
    server.hits = Counter()
    server.headers = []
    # A short poll interval lets shutdown() return quickly at teardown.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def upstream(upstream_server: UpstreamServer) -> str:
    return f"http://127.0.0.1:{upstream_server.server_port}"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_outbound_success(app: Flask, client: FlaskClient, upstream: str) -> None:
    app.config["OUTBOUND_URL"] = f"{upstream}/ok"

    response = client.get("/api/outbound", headers=ALICE)

    assert response.status_code == 200
    body = response.get_json()
    assert body["url"] == f"{upstream}/ok"
    assert body["status"] == 200
    assert body["content_type"] == "text/plain"
    assert GREETING.startswith(body["excerpt"].rstrip("\ufffd"))
    assert len(body["excerpt"].encode()) <= 200 + 2  # a cut multi-byte character may widen
    assert body["elapsed_ms"] >= 0


def test_outbound_error_status_is_a_bad_gateway(
    app: Flask, client: FlaskClient, upstream: str
) -> None:
    app.config["OUTBOUND_URL"] = f"{upstream}/down"

    response = client.get("/api/outbound", headers=ALICE)

    assert response.status_code == 502
    assert response.content_type == "application/problem+json"
    assert response.get_json()["upstream_status"] == 503
    assert response.get_json()["detail"] == "The outbound service answered 503 Service Unavailable."


def test_outbound_unreachable(app: Flask, client: FlaskClient, closed_port: int) -> None:
    app.config["OUTBOUND_URL"] = f"http://127.0.0.1:{closed_port}/"

    response = client.get("/api/outbound", headers=ALICE)

    assert response.status_code == 502
    assert response.get_json()["upstream_status"] is None
    assert response.get_json()["detail"].startswith("The outbound service is unreachable:")


def test_outbound_timeout(app: Flask, client: FlaskClient, upstream: str) -> None:
    app.config.update(OUTBOUND_URL=f"{upstream}/slow", OUTBOUND_TIMEOUT=0.2)

    response = client.get("/api/outbound", headers=ALICE)

    assert response.status_code == 502
    assert response.get_json()["detail"] == "The outbound service did not answer within 0.2 s."


def test_a_blip_is_retried(
    app: Flask, client: FlaskClient, upstream: str, upstream_server: UpstreamServer
) -> None:
    app.config["OUTBOUND_URL"] = f"{upstream}/flaky"

    response = client.get("/api/outbound", headers=ALICE)

    assert response.status_code == 200
    assert upstream_server.hits["/flaky"] == 2


def test_a_service_that_stays_down_opens_the_breaker(
    app: Flask, client: FlaskClient, upstream: str, upstream_server: UpstreamServer
) -> None:
    app.config["OUTBOUND_URL"] = f"{upstream}/down"
    for _ in range(5):
        assert client.get("/api/outbound", headers=ALICE).status_code == 502
    assert upstream_server.hits["/down"] == 5 * 3  # each call tried three times

    refused = client.get("/api/outbound", headers=ALICE)

    assert refused.status_code == 503
    assert refused.content_type == "application/problem+json"
    assert 0 < int(refused.headers["Retry-After"]) <= 30
    assert upstream_server.hits["/down"] == 15  # refused without calling it


def test_the_call_carries_the_request_id_and_the_trace(
    app: Flask, client: FlaskClient, upstream: str, upstream_server: UpstreamServer
) -> None:
    app.config["OUTBOUND_URL"] = f"{upstream}/ok"
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    response = client.get(
        "/api/outbound", headers={**ALICE, "X-Request-ID": "req-42", "traceparent": incoming}
    )

    assert response.status_code == 200
    [sent] = upstream_server.headers
    assert sent["X-Request-ID"] == "req-42"
    assert sent["User-Agent"] == "example-documents/1.0"
    version, trace_id, span_id, flags = sent["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert len(span_id) == 16
    assert span_id != "00f067aa0ba902b7"


def test_the_request_deadline_cuts_a_slow_call_short(
    app_config: dict[str, Any],
    upstream: str,
    upstream_server: UpstreamServer,
    request: pytest.FixtureRequest,
) -> None:
    app_config.update(
        RESILIENCE_REQUEST_TIMEOUT=0.5, OUTBOUND_URL=f"{upstream}/slow", OUTBOUND_TIMEOUT=5.0
    )
    app: Flask = request.getfixturevalue("app")

    started = time.monotonic()
    response = app.test_client().get("/api/outbound", headers=ALICE)

    assert response.status_code == 504  # the deadline, not the 5 s of the call's timeout
    assert response.content_type == "application/problem+json"
    assert time.monotonic() - started < 1.0
    assert upstream_server.hits["/slow"] == 1  # a deadline is not retried
