"""Requests interrupted at their deadline under real gunicorn, sync and gthread workers.

With ``RESILIENCE_INTERRUPT_ON_DEADLINE`` a view still running at its 1 s deadline
is answered 504 problem+json within 1.2 s, its ``finally`` blocks run, the same
worker serves the next request, gunicorn's own timeout never fires, and a
database connection the view held is not handed to the next request dirty. A
sync worker's request is interrupted anywhere, blocking calls included; a
gthread worker's between two Python operations (its blocking calls are bounded
by the statement and outbound deadlines instead).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import (
    free_port,
    gunicorn_options,
    log_tail,
    port_is_open,
    skip_or_fail,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    url: str
    notes: Path
    log: Path
    worker_class: str


def get(url: str) -> tuple[int, str, str, float]:
    """(status, content type, body, seconds) of a GET."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            body = response.read().decode()
            return response.status, response.headers["Content-Type"], body, _since(started)
    except urllib.error.HTTPError as error:
        body = error.read().decode()
        return error.code, error.headers["Content-Type"], body, _since(started)


def _since(started: float) -> float:
    return time.perf_counter() - started


@pytest.fixture(params=["sync", "gthread"])
def served(request: pytest.FixtureRequest, postgres_url: str, tmp_path: Path) -> Iterator[Served]:
    executable = Path(sys.executable).with_name("gunicorn")
    if not executable.exists():
        skip_or_fail("gunicorn is missing: pip install -e '.[example]'")
    port = free_port()
    notes, log = tmp_path / "notes.txt", tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "INTERRUPT_TEST_DATABASE": postgres_url,
        "INTERRUPT_TEST_NOTES": str(notes),
    }
    if request.param == "gthread":
        # Under coverage's tracer (which the suite's --cov puts in every subprocess),
        # a spinning thread is neither interrupted nor lets the worker's main thread
        # tell gunicorn it is alive: the worker is killed at its timeout. Production
        # runs no tracer; this worker runs without it.
        env.pop("COVERAGE_PROCESS_CONFIG", None)
    command = [
        str(executable),
        *gunicorn_options(),
        "--workers",
        "1",
        "--worker-class",
        request.param,
        # gunicorn makes a sync worker with more than one thread a gthread worker.
        "--threads",
        "1" if request.param == "sync" else "2",
        "--timeout",
        "5",  # above the 1 s budget; must never fire
        "--bind",
        f"127.0.0.1:{port}",
        "--pythonpath",
        str(ROOT),
        "--error-logfile",
        str(log),
        "tests.lifecycle.interrupted_app:create_app()",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        # The master listens before its worker has loaded the app: wait for an answer.
        if not wait_until(lambda: port_is_open(port) and _answers(port), timeout=30):
            raise RuntimeError(f"gunicorn did not start:\n{log.read_text()}")
        yield Served(f"http://127.0.0.1:{port}", notes, log, request.param)
    finally:
        process.terminate()
        process.wait(timeout=15)


def _answers(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/pid")[0] == 200
    except OSError:
        return False


def worker_pid(served: Served) -> str:
    return get_from(served, "/pid")[2]


def get_from(served: Served, path: str) -> tuple[int, str, str, float]:
    """A GET of ``path``; a connection the server dropped fails with the server's log."""
    try:
        return get(served.url + path)
    except (http.client.HTTPException, ConnectionError) as error:
        pytest.fail(f"GET {path}: {error!r}; the server's log:\n{log_tail(served.log, 60)}")


@pytest.mark.parametrize(
    ("served", "path", "finally_note"),
    [
        ("sync", "/sleep", "sleep finally"),
        ("sync", "/silent-socket", "socket finally"),
        ("sync", "/spin", "spin finally"),
        # A gthread worker's request is interrupted between Python operations only.
        ("gthread", "/spin", "spin finally"),
    ],
    ids=["sync-sleep", "sync-silent-socket", "sync-spin", "gthread-spin"],
    indirect=["served"],
)
def test_a_view_past_its_deadline_is_interrupted_and_answered_504(
    served: Served, path: str, finally_note: str
) -> None:
    before = worker_pid(served)
    status, content_type, body, elapsed = get_from(served, path)
    assert status == 504
    assert content_type.startswith("application/problem+json")
    assert json.loads(body)["status"] == 504
    assert elapsed <= 1.2
    assert worker_pid(served) == before  # the same worker lives on
    assert f"{before} {finally_note}" in served.notes.read_text()
    assert "WORKER TIMEOUT" not in served.log.read_text()


def test_a_connection_held_by_an_interrupted_view_is_not_reused_dirty(served: Served) -> None:
    status, _, _, elapsed = get_from(served, "/held-connection")
    assert status == 504
    assert elapsed <= 1.2
    assert get_from(served, "/clean")[2] == "clean"
    assert "WORKER TIMEOUT" not in served.log.read_text()


def test_an_answer_interrupted_in_a_teardown_is_replaced_headers_and_all(served: Served) -> None:
    # The view had answered 200 when a teardown overran its deadline: the 504 takes the
    # place of that answer, with its own headers only, so that a keep-alive connection
    # reads exactly one answer and serves the next request.
    host, port = served.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        connection.request("GET", "/slow-teardown")
        answer = connection.getresponse()
        body = answer.read()
        assert answer.status == 504
        assert answer.headers.get_all("Content-Length") == [str(len(body))]
        assert answer.headers.get_all("Content-Type") == ["application/problem+json"]
        assert json.loads(body)["status"] == 504
        connection.request("GET", "/pid")
        following = connection.getresponse()
        assert following.status == 200
        assert following.read().decode().isdigit()
    finally:
        connection.close()
    assert "WORKER TIMEOUT" not in served.log.read_text()
