"""Cleanups, draining and graceful shutdown, down to SIGTERM sent to real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask

from flask_resilience import Resilience, lifecycle
from flask_resilience.circuit import Breakers
from flask_resilience.state import get_state
from tests.support.paths import ROOT
from tests.support.servers import free_port, gunicorn_options, port_is_open, wait_until

VENV_BIN = Path(sys.executable).parent


def test_cleanups_run_once_newest_first(make_app: Callable[..., Flask]) -> None:
    ran: list[str] = []
    resilience = Resilience()

    @resilience.register_cleanup
    def first() -> None:
        ran.append("first")

    @resilience.register_cleanup(timeout=1, name="second")
    def second() -> None:
        ran.append("second")

    app = make_app()
    resilience.init_app(app)
    resilience.register_cleanup(lambda: ran.append("third"))
    with app.app_context():
        resilience.shutdown()
        resilience.shutdown()
    assert ran == ["third", "second", "first"]
    assert app.extensions["resilience"].draining.is_set()


def test_a_failing_or_hanging_cleanup_never_skips_the_others(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []
    release = threading.Event()
    resilience = Resilience()
    resilience.register_cleanup(lambda: ran.append("oldest"))

    @resilience.register_cleanup(timeout=0.2)
    def hangs() -> None:
        release.wait(5)

    @resilience.register_cleanup
    def fails() -> None:
        raise RuntimeError("boom")

    app = make_app()
    resilience.init_app(app)
    started = time.monotonic()
    with app.app_context():
        resilience.shutdown()
    release.set()
    assert ran == ["oldest"]
    assert time.monotonic() - started < 2
    assert "Cleanup" in caplog.text and "boom" in caplog.text
    assert "did not finish within" in caplog.text


def test_shared_cleanups_run_once_across_apps(make_app: Callable[..., Flask]) -> None:
    ran: list[str] = []
    resilience = Resilience()
    resilience.register_cleanup(lambda: ran.append("shared"))
    apps = [make_app(), make_app()]
    for app in apps:
        resilience.init_app(app)
    for app in apps:
        lifecycle.lifecycle_of(app).shutdown()
    assert ran == ["shared"]


def test_the_deadline_bounds_the_whole_shutdown(make_app: Callable[..., Flask]) -> None:
    resilience = Resilience()
    resilience.register_cleanup(lambda: time.sleep(5), timeout=10)
    app = make_app(RESILIENCE_SHUTDOWN_TIMEOUT=0.5)
    resilience.init_app(app)
    started = time.monotonic()
    lifecycle.lifecycle_of(app).shutdown()
    assert time.monotonic() - started < 1.5


def test_a_cleanup_with_no_time_left_is_skipped(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []
    resilience = Resilience()
    resilience.register_cleanup(lambda: ran.append("late"))
    app = make_app()
    resilience.init_app(app)
    lifecycle.lifecycle_of(app).shutdown(deadline=time.monotonic() - 1)
    assert ran == []
    assert "skipped" in caplog.text


@pytest.fixture
def served(
    make_app: Callable[..., Flask], serve: Callable[[Flask], str]
) -> tuple[Flask, Resilience, str]:
    """A real threaded HTTP server in this process, with a slow view."""
    resilience = Resilience()
    app = make_app(RATELIMIT_ENABLED=False, RESILIENCE_SHUTDOWN_TIMEOUT=5)
    resilience.init_app(app)

    @app.get("/slow")
    def slow() -> str:
        time.sleep(1)
        return "done"

    @app.get("/shutdown-from-a-view")
    def shutdown_from_a_view() -> str:
        resilience.shutdown()
        return "shut"

    return app, resilience, serve(app)


def _get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_shutdown_waits_for_requests_in_flight(served: tuple[Flask, Resilience, str]) -> None:
    app, resilience, base = served
    with ThreadPoolExecutor(3) as pool:
        requests = [pool.submit(_get, f"{base}/slow") for _ in range(3)]
        lifecycle_ = lifecycle.lifecycle_of(app)
        assert wait_until(lambda: lifecycle_.in_flight == 3, 5)
        with app.app_context():
            resilience.shutdown()
        assert lifecycle_.in_flight == 0
        assert [future.result() for future in requests] == [(200, "done")] * 3


def test_shutdown_from_within_a_request_does_not_wait_for_it(
    served: tuple[Flask, Resilience, str],
) -> None:
    _, _, base = served
    started = time.monotonic()
    assert _get(f"{base}/shutdown-from-a-view") == (200, "shut")
    assert time.monotonic() - started < 2


def test_sigterm_is_left_to_whoever_handles_it() -> None:
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: object) -> None:
        pass

    try:
        signal.signal(signal.SIGTERM, handler)
        assert lifecycle.install_sigterm_handler() is False
        assert signal.getsignal(signal.SIGTERM) is handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert lifecycle.install_sigterm_handler() is True
        assert lifecycle.install_sigterm_handler() is True
        outcome: list[bool] = []
        thread = threading.Thread(
            target=lambda: outcome.append(lifecycle.install_sigterm_handler())
        )
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        thread.start()
        thread.join()
        assert outcome == [False]  # only the main thread may handle signals
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- Real servers ------------------------------------------------------------------


def _start(
    command: list[str],
    port: int,
    tmp_path: Path,
    shutdown_timeout: float = 10,
    cleanup_seconds: float = 0,
) -> tuple[subprocess.Popen[bytes], Path]:
    cleanup_file = tmp_path / "cleanups.txt"
    env = {
        **os.environ,
        "LIFECYCLE_CLEANUP_FILE": str(cleanup_file),
        "LIFECYCLE_CLEANUP_SECONDS": str(cleanup_seconds),
        "LIFECYCLE_SHUTDOWN_TIMEOUT": str(shutdown_timeout),
        "PYTHONPATH": str(ROOT),
    }
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if not wait_until(lambda: port_is_open(port), 15):
        process.kill()
        process.wait(5)
        pytest.fail("the server did not start:\n" + (tmp_path / "server.log").read_text())
    return process, cleanup_file


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(5)


def _sigterm_during_slow_requests(
    process: subprocess.Popen[bytes], base: str, *, probe_readiness: bool
) -> tuple[list[Future[tuple[int, str]]], list[int], float]:
    """Three slow requests in flight, then SIGTERM; returns them, readiness seen, exit time."""
    readiness: list[int] = []
    with ThreadPoolExecutor(4) as pool:
        requests = [pool.submit(_get, f"{base}/slow?seconds=2") for _ in range(3)]
        time.sleep(0.5)  # let them reach the view
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        if probe_readiness:
            time.sleep(0.3)
            readiness.append(_get(f"{base}/health/ready", timeout=2)[0])
            process.send_signal(signal.SIGTERM)  # a second one changes nothing
        process.wait(20)
        elapsed = time.monotonic() - sent
        return requests, readiness, elapsed


def _gunicorn(port: int, *options: str) -> list[str]:
    return [
        str(VENV_BIN / "gunicorn"),
        "--config",
        "tests/lifecycle/gunicorn_conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        *gunicorn_options(),
        *options,
        "tests.lifecycle.served_app:create_app()",
    ]


def _connection_outcome(url: str) -> str:
    """The status of a GET, or "refused", or how the connection was lost."""
    try:
        return str(_get(url, timeout=5)[0])
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionRefusedError):
            return "refused"
        return f"lost ({error.reason!r})"
    except OSError as error:  # reset or closed once the request was sent
        return f"lost ({error!r})"


def test_connections_after_sigterm_are_refused_not_accepted_and_lost(tmp_path: Path) -> None:
    # Sync workers (gunicorn's default) stop accepting at the signal, but a copy of the
    # listening socket they kept open would let the kernel accept connections that no
    # process serves, and reset them once the cleanups are over and the workers exit.
    port = free_port()
    process, _ = _start(
        _gunicorn(port, "--worker-class", "sync", "--threads", "1"),
        port,
        tmp_path,
        cleanup_seconds=1.5,
    )
    url = f"http://127.0.0.1:{port}/health/live"
    try:
        assert wait_until(lambda: _connection_outcome(url) == "200", 10)
        time.sleep(0.5)  # both workers booted
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the workers are in their cleanups
        outcomes = [_connection_outcome(url) for _ in range(5)]
        process.wait(20)
    finally:
        _stop(process)
    assert outcomes == ["refused"] * 5, (tmp_path / "server.log").read_text()


def test_sigterm_to_gunicorn_drains_then_cleans_up(tmp_path: Path) -> None:
    port = free_port()
    process, cleanup_file = _start(_gunicorn(port), port, tmp_path)
    try:
        requests, _, elapsed = _sigterm_during_slow_requests(
            process, f"http://127.0.0.1:{port}", probe_readiness=False
        )
        answers = [future.result() for future in requests]
    finally:
        _stop(process)
    log = (tmp_path / "server.log").read_text()
    assert [status for status, _ in answers] == [200, 200, 200], log
    # Each request saw readiness turn to draining while it was still in flight.
    assert all(json.loads(body) == {"draining": True} for _, body in answers), log
    assert process.returncode == 0, log
    assert elapsed < 10, log
    lines = cleanup_file.read_text().splitlines()
    assert len(lines) == 2 and len(set(lines)) == 2, lines  # once in each worker
    # Two workers counting rate limits in memory: each says so as it starts.
    assert log.count("2 worker processes serve this app") == 2, log
    assert "RATELIMIT_STORAGE_URI=redis://" in log


def test_a_request_that_outlives_the_deadline_does_not_hold_gunicorn_up(tmp_path: Path) -> None:
    port = free_port()
    process, cleanup_file = _start(_gunicorn(port), port, tmp_path, shutdown_timeout=2)
    try:
        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(_get, f"http://127.0.0.1:{port}/slow?seconds=30", 20)
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            process.wait(20)
            elapsed = time.monotonic() - sent
            with pytest.raises(OSError):
                stuck.result()  # cut off at the deadline
    finally:
        _stop(process)
    log = (tmp_path / "server.log").read_text()
    assert elapsed < 4, log  # the deadline (2 s), not gunicorn's graceful_timeout (15 s)
    assert "still in flight at the shutdown deadline" in log
    lines = cleanup_file.read_text().splitlines()
    assert len(lines) == 2 and len(set(lines)) == 2, log  # the stuck worker cleaned up too


def test_sigterm_to_a_werkzeug_server_drains_then_cleans_up(tmp_path: Path) -> None:
    port = free_port()
    process, cleanup_file = _start(
        [sys.executable, "tests/lifecycle/served_app.py", str(port)], port, tmp_path
    )
    try:
        requests, readiness, elapsed = _sigterm_during_slow_requests(
            process, f"http://127.0.0.1:{port}", probe_readiness=True
        )
        answers = [future.result() for future in requests]
    finally:
        _stop(process)
    log = (tmp_path / "server.log").read_text()
    assert answers == [(200, '{"draining":true}\n')] * 3, log
    assert readiness == [503], log  # still serving during the drain, readiness down
    assert process.returncode == 0, log
    assert elapsed < 10, log
    assert len(cleanup_file.read_text().splitlines()) == 1


def test_shutdown_disposes_of_the_database_pools_after_the_apps_cleanups(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import text
    from sqlalchemy.pool import QueuePool

    db = SQLAlchemy()
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}")
    resilience = Resilience(db=db)
    pools_seen: list[object] = []

    @resilience.register_cleanup  # registered before init_app, still runs before the pools go
    def uses_the_database() -> None:
        with app.app_context():
            pools_seen.append(db.engine.pool)

    resilience.init_app(app)
    db.init_app(app)
    with app.app_context():
        db.session.execute(text("SELECT 1"))
        db.session.remove()
        pool = db.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedin() == 1
        resilience.shutdown()
        fresh = db.engine.pool
        assert fresh is not pool  # disposed of: a fresh, empty pool
        assert isinstance(fresh, QueuePool)
        assert fresh.checkedin() == 0
    assert pools_seen == [pool]


def test_requests_still_in_flight_at_the_deadline_are_logged(
    make_app: Callable[..., Flask],
    serve: Callable[[Flask], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(RATELIMIT_ENABLED=False, RESILIENCE_SHUTDOWN_TIMEOUT=0.3)
    Resilience(app)
    release = threading.Event()

    @app.get("/stuck")
    def stuck() -> str:
        release.wait(5)
        return "done"

    url = serve(app)
    with ThreadPoolExecutor(1) as pool:
        request = pool.submit(_get, f"{url}/stuck")
        lifecycle_ = lifecycle.lifecycle_of(app)
        assert wait_until(lambda: lifecycle_.in_flight == 1, 5)
        started = time.monotonic()
        lifecycle_.shutdown()
        assert time.monotonic() - started < 1
        release.set()
        assert request.result() == (200, "done")
    assert "1 requests still in flight" in caplog.text


@pytest.mark.redis
def test_shutdown_closes_the_circuit_breakers_redis_client(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    import redis as redis_lib

    observer = redis_lib.from_url(redis_url)
    app = make_app(RESILIENCE_CIRCUIT_STORAGE_URI=redis_url, RATELIMIT_ENABLED=False)
    resilience = Resilience(app)
    before = len(observer.client_list())
    link = get_state(app).get(Breakers).link
    assert link is not None
    link.client.ping()
    assert len(observer.client_list()) == before + 1
    with app.app_context():
        resilience.shutdown()
    assert len(observer.client_list()) == before
    observer.close()
