"""The cost of an outbound call through flask_resilience.outbound.Session next to a
plain requests.Session, against a local HTTP server on loopback.

Both sessions call the same server in the same run, their rounds interleaved, in
a request of an app with the extension (the call gets its X-Request-ID, its
traceparent and its timeout bounded by the deadline). The figure is the CPU time
of the calling thread: the server, in a process of its own, is left out.

Run alone with ``python -m bench.outbound``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from bench.core import hello_app
from bench.table import Row, render, scaled
from flask_resilience import Resilience
from flask_resilience.log import ENVIRON_STARTED
from flask_resilience.outbound import Session

REPEAT = 20
ROUNDS = 151
TARGET = 5.0  # percent


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sessions reuse their connection
    disable_nagle_algorithm = True  # the body is not held back for the headers' ACK

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve() -> None:
    """Serve on a free port of 127.0.0.1, print it, and stop when standard input closes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_port, flush=True)
    sys.stdin.read()


@contextmanager
def _server() -> Iterator[str]:
    """The server in a process of its own, so that it takes no turn on this one's GIL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.outbound", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield f"http://127.0.0.1:{int(process.stdout.readline())}/"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


def paired_ratio(
    first: Callable[[], object], second: Callable[[], object], *, repeat: int, rounds: int
) -> float:
    """The median over ``rounds`` of ``second``'s CPU time over ``first``'s.

    Each round times both, in an order that alternates from round to round, so
    that the two halves of a ratio see the same load on the machine: an HTTP call
    costs about a millisecond, and on a busy machine the medians of the two apart
    drift by more than the few percent measured here.
    """
    ratios = []
    for round_number in range(rounds):
        pair = (first, second) if round_number % 2 == 0 else (second, first)
        spent = []
        for work in pair:
            start = time.thread_time()
            for _ in range(repeat):
                work()
            spent.append(time.thread_time() - start)
        if round_number % 2:
            spent.reverse()
        ratios.append(spent[1] / spent[0])
    return statistics.median(ratios)


def rows(scale: float = 1.0) -> list[Row]:
    # A deadline far enough for the whole run: each call still asks for the time left.
    app = hello_app(RESILIENCE_REQUEST_TIMEOUT=3600)
    Resilience(app)
    with (
        _server() as url,
        requests.Session() as plain,
        Session() as bounded,
        # A request that came through the WSGI entry: it has a deadline.
        app.test_request_context(environ_overrides={ENVIRON_STARTED: time.perf_counter()}),
    ):

        def plain_call() -> object:
            return plain.get(url, timeout=10).content

        def bounded_call() -> object:
            return bounded.get(url).content

        plain_call(), bounded_call()  # connect before measuring
        ratio = paired_ratio(
            plain_call,
            bounded_call,
            repeat=scaled(REPEAT, scale),
            rounds=scaled(ROUNDS, scale, minimum=3),
        )
    overhead = (ratio - 1) * 100
    return [
        Row(
            "outbound session overhead per request vs plain requests.Session",
            overhead,
            "%",
            f"<= {TARGET:g}%",
            overhead <= TARGET,
        )
    ]


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        print(render(rows()))
