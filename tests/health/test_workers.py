"""The dashboard's data endpoint: every live worker's snapshot, written by real
separate processes sharing the instance folder; dead and stale ones left out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_resilience.health import health_state, write_worker_snapshot
from flask_resilience.health.workers import FOLDER
from flask_resilience.state import get_state
from tests.health.apps import BREAKER, TOKEN, create_app
from tests.health.snapshot_writer import REQUESTS
from tests.support.paths import ROOT

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def writer(instance: Path, mode: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.health.snapshot_writer", str(instance), mode],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return process


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(instance_path=str(tmp_path))


@pytest.fixture
def live_writer(tmp_path: Path) -> Iterator[int]:
    process = writer(tmp_path, "stay")
    assert process.stdout is not None
    pid = int(process.stdout.readline())
    try:
        yield pid
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(10)
        process.stdout.close()


def dead_writer(tmp_path: Path) -> int:
    process = writer(tmp_path, "kill")
    out, _ = process.communicate(timeout=30)
    assert process.returncode == -9
    return int(out)


def test_the_data_shows_every_live_worker_and_drops_dead_ones(
    app: Flask, tmp_path: Path, live_writer: int
) -> None:
    dead = dead_writer(tmp_path)
    folder = tmp_path / FOLDER
    assert (folder / f"{dead}.json").exists()  # the killed worker left its snapshot
    client = app.test_client()
    for _ in range(3):
        client.get("/")

    response = client.get("/health/dashboard/data", headers=AUTH)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = response.get_json()
    pids = [worker["pid"] for worker in data["workers"]]
    assert pids == sorted([os.getpid(), live_writer])
    assert data["answered_by"] == os.getpid()
    assert not (folder / f"{dead}.json").exists()  # removed by the reader
    workers = {worker["pid"]: worker for worker in data["workers"]}
    other, mine = workers[live_writer], workers[os.getpid()]
    assert other["breakers"][BREAKER]["state"] == "forced-open"
    assert other["requests"]["total"] == REQUESTS
    assert mine["requests"]["total"] == 3
    assert data["instance"]["requests"] == REQUESTS + 3
    assert data["instance"]["workers"] == 2


def test_a_worker_that_exits_takes_its_snapshot_away(tmp_path: Path) -> None:
    process = writer(tmp_path, "exit")
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert int(out) > 0  # it wrote before exiting
    assert list((tmp_path / FOLDER).glob("*.json")) == []


def test_a_folder_that_cannot_be_written_is_logged_not_raised(
    app: Flask, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FOLDER).write_text("a file where the folder should be")
    health = health_state(app)
    health.monitor.tick()  # the housekeeping writes the snapshot, then the sample is taken
    assert "Writing the dashboard's snapshot" in caplog.text
    assert len(health.monitor.history) == 1
    assert health.monitor.errors == 0


def test_a_snapshot_not_rewritten_for_long_is_left_out(app: Flask, tmp_path: Path) -> None:
    folder = tmp_path / FOLDER
    folder.mkdir()
    # pid 1 lives, but its snapshot was written an hour ago: a stuck or foreign process.
    old = {"pid": 1, "written_at": time.time() - 3600, "history": [], "requests": {}}
    (folder / "1.json").write_text(json.dumps(old))
    data = app.test_client().get("/health/dashboard/data", headers=AUTH).get_json()
    assert [worker["pid"] for worker in data["workers"]] == [os.getpid()]
    assert (folder / "1.json").exists()  # its process lives: not ours to remove


def test_the_monitor_writes_this_workers_snapshot(app: Flask, tmp_path: Path) -> None:
    health = health_state(app)
    health.monitor.observe(health.monitor.collect())
    write_worker_snapshot(app, get_state(app), health)
    written = json.loads((tmp_path / FOLDER / f"{os.getpid()}.json").read_text())
    assert written["pid"] == os.getpid()
    assert len(written["history"]) == 1
    assert written["monitor"]["state"] == "stopped"  # no thread under the test client
    health.workers.remove()
    assert not (tmp_path / FOLDER / f"{os.getpid()}.json").exists()


def test_429s_come_from_the_event_metrics(app: Flask) -> None:
    from flask_resilience import signals

    signals.rate_limited.send(app)
    signals.rate_limited.send(app)
    data = app.test_client().get("/health/dashboard/data", headers=AUTH).get_json()
    assert data["workers"][0]["rate_limited"] == 2
    assert data["instance"]["rate_limited"] == 2


def test_the_data_needs_the_token(app: Flask) -> None:
    response = app.test_client().get("/health/dashboard/data")
    assert response.status_code == 401
