"""A local HTTP service the outbound and retry tests call: it records every request
it gets, and answers as its path says.

* ``/ok``: 200 at once, the request's headers as JSON;
* ``/silent``: never answers (until the test ends);
* ``/slow/<seconds>``: 200 after that long;
* ``/busy/<n>``: 503 with ``Retry-After`` (``?after=`` seconds, or an HTTP date
  ``?date=`` seconds ahead) to the first ``n`` requests, then 200;
* ``/fail``: 500.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Arrival:
    path: str
    at: float  # time.monotonic() when the request line was read
    headers: dict[str, str]


@dataclass
class Record:
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, path: str) -> list[Arrival]:
        with self.lock:
            return [arrival for arrival in self.arrivals if arrival.path == path]


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    record: Record
    release: threading.Event

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def hits(self, path: str) -> int:
        return len(self.record.of(path))


class _Handler(BaseHTTPRequestHandler):
    server: UpstreamServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        at = time.monotonic()
        parts = urlsplit(self.path)
        record = self.server.record
        with record.lock:
            record.arrivals.append(Arrival(parts.path, at, dict(self.headers.items())))
            seen = sum(1 for arrival in record.arrivals if arrival.path == parts.path)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        segments = parts.path.strip("/").split("/")
        # The client may have given up, which is what several tests are about.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(segments, query, seen)

    def _answer(self, segments: list[str], query: dict[str, str], seen: int) -> None:
        match segments:
            case ["ok"]:
                self._send(200, json.dumps(dict(self.headers.items())))
            case ["silent"]:
                self.server.release.wait(timeout=30)
            case ["slow", seconds]:
                self.server.release.wait(timeout=float(seconds))
                self._send(200, "late")
            case ["busy", times] if seen <= int(times):
                if "date" in query:
                    when = email.utils.formatdate(time.time() + float(query["date"]), usegmt=True)
                    self._send(503, "busy", {"Retry-After": when})
                else:
                    self._send(503, "busy", {"Retry-After": query.get("after", "1")})
            case ["busy", _]:
                self._send(200, "done")
            case ["fail"]:
                self._send(500, "failed")
            case _:
                self._send(404, "no such path")

    def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def upstream_server() -> Iterator[UpstreamServer]:
    """Serve on a free port of 127.0.0.1 until the block ends."""
    server = UpstreamServer(("127.0.0.1", 0), _Handler)
    server.record = Record()
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
