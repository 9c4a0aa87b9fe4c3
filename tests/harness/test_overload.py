"""The overload harness: its open-loop generator, its recovery figure, and a smoke run."""

from __future__ import annotations

import math
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import openloop
from harness.openloop import TIMED_OUT, Result
from harness.overload import PROBE_RATE, Run
from tests.harness.pages import table_rows
from tests.support.paths import ROOT
from tests.support.servers import LOCALHOST, port_is_open, skip_or_fail

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MEASURES = (
    "Offered (open loop)",
    "Goodput (2xx per second)",
    "p50 of successes",
    "p99 of successes",
    "5xx answers",
    "503 with Retry-After",
    "4xx answers",
    "Client timeouts (10 s)",
    "Connections failed",
    "Generator behind schedule, p99 / max",
    "Recovery after the load stops",
)


@pytest.fixture
def silent_server() -> Iterator[tuple[int, list[float]]]:
    """A server that accepts connections and never answers; the moments it accepted them."""
    listener = socket.create_server((LOCALHOST, 0), backlog=512)
    accepted: list[float] = []
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(time.time())
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        listener.close()
        for connection in held:
            connection.close()


def test_requests_leave_on_schedule_though_none_is_answered(
    silent_server: tuple[int, list[float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, accepted = silent_server
    monkeypatch.setattr(openloop, "TIMEOUT", 1.0)
    start = time.time()
    results = openloop.run(LOCALHOST, port, "/", rate=50, seconds=1.0)

    # A closed loop would have sent one request per client and waited.
    assert len(results) == 50
    assert len(accepted) == 50
    assert all(result.status == TIMED_OUT for result in results)
    assert max(accepted) - start < 1.3  # the last one left at 0.98 s, on time
    for index, result in enumerate(sorted(results, key=lambda r: r.scheduled)):
        assert result.scheduled == pytest.approx(start + index / 50, abs=0.05)
        assert result.latency == pytest.approx(1.0, abs=0.05)


@pytest.fixture
def server_answering_at_eof() -> Iterator[int]:
    """A server that answers a connection only once the client has said it sends no more,
    as a gunicorn worker's graceful close waits for it; yields its port."""
    listener = socket.create_server((LOCALHOST, 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2.0)
                try:
                    while connection.recv(4096):
                        pass
                except OSError:
                    continue  # no end of the request in time: no answer
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_each_client_shuts_its_sending_side_once_the_request_is_out(
    server_answering_at_eof: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openloop, "TIMEOUT", 3.0)
    results = openloop.run(LOCALHOST, server_answering_at_eof, "/", rate=10, seconds=0.5)

    assert [result.status for result in results] == [200] * 5
    assert max(result.latency for result in results) < 1.0


def probe(stop: float, latencies: list[tuple[float, float, int]]) -> list[Result]:
    return [Result(stop + at, latency, status, False) for at, latency, status in latencies]


def test_recovery_is_the_first_second_from_which_every_second_is_prompt() -> None:
    stop = 1000.0
    slow_then_fast = [
        (0.1, 2.0, 200),  # queued behind the load
        (1.1, 0.05, 200),
        (2.1, 0.9, 200),  # still slow once more: not recovered yet
        (3.1, 0.05, 200),
        (4.1, 0.05, 200),
    ]
    run = Run("plain", 10, 1, stop - 1, stop, [], probe(stop, slow_then_fast))
    assert run.recovery == 3.0

    shed = [(0.1, 0.01, 503), (1.1, 0.02, 200)]
    assert Run("resilient", 10, 1, stop - 1, stop, [], probe(stop, shed)).recovery == 1.0

    never = [(0.1, 0.01, 200), (1.1, 3.0, 200)]
    assert Run("plain", 10, 1, stop - 1, stop, [], probe(stop, never)).recovery is None


def number(cell: str) -> float:
    found = re.search(r"[\d,]*\d(\.\d+)?", cell)
    assert found, cell
    return float(found[0].replace(",", ""))


@pytest.mark.postgres
@pytest.mark.redis
def test_smoke_run_measures_both_apps_and_writes_the_page_and_plot(tmp_path: Path) -> None:
    for port, name in ((5432, "PostgreSQL"), (6379, "Redis")):
        if not port_is_open(port):
            skip_or_fail(f"the overload harness needs {name} on {LOCALHOST}:{port}")
    run = subprocess.run(
        [sys.executable, "-m", "harness.overload", "--smoke", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert run.returncode == 0, run.stdout + run.stderr

    page = (tmp_path / "overload.md").read_text()
    assert "`python -m harness.overload --smoke`" in page
    assert "Load average before the run" in page
    rows = table_rows(page, "Measure")
    assert list(rows) == list(MEASURES)
    for measure, (plain, resilient, _target, verdict) in rows.items():
        for figure in (plain, resilient):
            assert math.isfinite(number(figure)), (measure, figure)
        assert verdict in ("-", "not judged"), (measure, verdict)
    capacity = number(re.search(r"\*\*([\d.]+) requests/s\*\*", page)[1])  # type: ignore[index]
    assert capacity > 0
    assert rows["Offered (open loop)"][0] == f"{3 * capacity:g}/s"
    assert number(rows["Goodput (2xx per second)"][1]) > 0
    assert f"sends {PROBE_RATE:g} requests/s" in page

    assert "(overload.png)" in page
    data = (tmp_path / "overload.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1000 and height >= 700
