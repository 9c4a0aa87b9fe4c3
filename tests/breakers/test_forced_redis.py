"""A forced state shared through Redis: across processes, and across a Redis restart.

What docs/decorators.md promises, tested here on a Redis of the test's own:

- a forced state (or its release) reaches every process within
  ``RESILIENCE_CIRCUIT_SYNC_INTERVAL`` (0.5 s) of its next call;
- while Redis is unreachable, each process keeps the forced state it last knew;
- when Redis comes back without the breaker's record (restarted without
  persistence), the first process still holding the forced state writes it back;
- with persistence Redis keeps it itself; without persistence and without any
  process that knew it, it is gone and the breaker is closed.

A new hash made by another process after the loss, and a release made after it,
are in test_shared_window.py.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import redis as redis_lib
from flask import Flask

from flask_resilience import Resilience, circuit_breaker
from flask_resilience.circuit import REDIS_KEY_PREFIX, get_breaker

from ..support.servers import RedisServer, wait_until
from .circuit_helpers import Dependency, breaker_name

pytestmark = pytest.mark.redis

REACH = 1.0
"""Seconds within which a forced state must reach another process."""

WORKER = """
import sys, time
from flask import Flask
from flask_resilience import CircuitOpen, Resilience, circuit_breaker

app = Flask("worker")
app.config["RESILIENCE_CIRCUIT_STORAGE_URI"] = sys.argv[1]
Resilience(app)

@circuit_breaker(sys.argv[2])
def dependency():
    return "ok"

last = None
with app.app_context():
    while True:
        try:
            outcome = dependency()
        except CircuitOpen as refused:
            outcome = refused.state
        if outcome != last:
            print(outcome, repr(time.time()), flush=True)
            last = outcome
        time.sleep(0.01)
"""


class Worker:
    """Another app process calling the breaker ``name`` every 10 ms; it prints each change
    of what its calls get (``ok``, ``forced-open`` ...) with the time it saw it."""

    def __init__(self, uri: str, name: str, log: Path) -> None:
        self._stderr = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, uri, name],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.log = log
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def next_change(self, timeout: float) -> tuple[str, float]:
        try:
            outcome, seen_at = self._lines.get(timeout=timeout).split()
        except queue.Empty:
            raise AssertionError(
                f"the worker saw no change in {timeout} s:\n{self.log.read_text()}"
            ) from None
        return outcome, float(seen_at)

    def no_change_for(self, seconds: float) -> bool:
        try:
            self._lines.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._reader.join(10)  # the pipe's end
        assert self.process.stdout is not None
        self.process.stdout.close()
        self._stderr.close()


@pytest.fixture
def worker(own_redis: RedisServer, tmp_path: Path) -> Iterator[Callable[[str], Worker]]:
    started: list[Worker] = []

    def start(name: str) -> Worker:
        process = Worker(own_redis.url, name, tmp_path / f"worker-{len(started)}.log")
        started.append(process)
        assert process.next_change(30)[0] == "ok"  # up, and calling
        return process

    yield start
    for process in started:
        process.stop()


def forced_field(uri: str, name: str) -> bytes | None:
    client = redis_lib.Redis.from_url(uri)
    try:
        value = client.hget(REDIS_KEY_PREFIX + name, "forced")
    finally:
        client.close()
    assert value is None or isinstance(value, bytes)
    return value


def state_in(app: Flask, name: str) -> str:
    with app.app_context():
        return Resilience().breaker(name).state


def test_a_forced_open_and_its_release_reach_another_process_within_a_second(
    own_redis: RedisServer, worker: Callable[[str], Worker], shared_app: Callable[..., Flask]
) -> None:
    name = breaker_name("incident")
    circuit_breaker(name)
    other = worker(name)
    operator = shared_app(own_redis.url)

    with operator.app_context():
        forced_at = time.time()
        Resilience().breaker(name).force_open()
    outcome, seen_at = other.next_change(5)
    assert outcome == "forced-open"
    assert seen_at - forced_at < REACH

    with operator.app_context():
        released_at = time.time()
        Resilience().breaker(name).reset()
    outcome, seen_at = other.next_change(5)
    assert outcome == "ok"
    assert seen_at - released_at < REACH


def test_a_forced_open_outlives_a_restart_of_redis_without_persistence(
    own_redis: RedisServer, worker: Callable[[str], Worker], shared_app: Callable[..., Flask]
) -> None:
    name = breaker_name("restart")
    circuit_breaker(name)
    other = worker(name)
    with shared_app(own_redis.url).app_context():
        Resilience().breaker(name).force_open()
    assert other.next_change(5)[0] == "forced-open"

    own_redis.kill()
    assert other.no_change_for(1.5)  # down: the worker keeps the state it knew
    own_redis.start()  # empty: no persistence
    # The worker, still calling, writes its forced state back.
    assert wait_until(lambda: forced_field(own_redis.url, name) == b"open", 10)
    assert other.no_change_for(0.2)
    newcomer = shared_app(own_redis.url)  # a process that never knew it
    assert state_in(newcomer, name) == "forced-open"

    with newcomer.app_context():
        released_at = time.time()
        Resilience().breaker(name).reset()
    outcome, seen_at = other.next_change(5)
    assert outcome == "ok"
    assert seen_at - released_at < REACH


def test_with_persistence_redis_keeps_it_and_without_nobody_left_knows_it(
    own_redis: RedisServer, shared_app: Callable[..., Flask]
) -> None:
    kept, lost = breaker_name("persisted"), breaker_name("forgotten")
    for name in (kept, lost):
        circuit_breaker(name)
    with shared_app(own_redis.url).app_context():  # an operator's command, then it exits
        Resilience().breaker(kept).force_open()
    client = redis_lib.Redis.from_url(own_redis.url)
    try:
        client.save()  # what persistence (RDB or AOF) does for it
    finally:
        client.close()
    with shared_app(own_redis.url).app_context():
        Resilience().breaker(lost).force_open()  # after the save: not persisted

    own_redis.kill()
    own_redis.start()
    assert forced_field(own_redis.url, kept) == b"open"  # loaded from disk by Redis
    assert forced_field(own_redis.url, lost) is None
    newcomer = shared_app(own_redis.url)
    assert state_in(newcomer, kept) == "forced-open"
    assert state_in(newcomer, lost) == "closed"


@pytest.mark.parametrize("action", ["force_open", "force_closed"])
def test_while_redis_is_down_a_process_keeps_its_forced_state(
    own_redis: RedisServer, shared_app: Callable[..., Flask], action: str
) -> None:
    name = breaker_name("outage")
    dependency = Dependency(failing=True)
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=0)(dependency)
    app = shared_app(own_redis.url)
    with app.app_context():
        breaker = Resilience().breaker(name)
        getattr(breaker, action)()
        expected = breaker.state
        own_redis.kill()
        for _ in range(3):
            with pytest.raises(Exception) as raised:  # either, by the forced state
                guarded()
            assert type(raised.value).__name__ == (
                "CircuitOpen" if expected == "forced-open" else "ConnectionError"
            )
        snapshot = get_breaker(name).snapshot()
        assert (snapshot["state"], snapshot["storage"]) == (expected, "memory")


def test_the_endpoint_forces_every_app_and_answers_503_when_redis_is_down(
    own_redis: RedisServer, shared_app: Callable[..., Flask], tmp_path: Path
) -> None:
    name = breaker_name("endpoint")
    circuit_breaker(name)
    token = {"Authorization": "Bearer shared-token"}
    answering, other = (
        shared_app(
            own_redis.url,
            instance_path=str(tmp_path),
            RESILIENCE_HEALTH_TOKEN="shared-token",
            RESILIENCE_MONITOR_ENABLED=False,
        )
        for _ in "ab"
    )
    client = answering.test_client()
    response = client.post(f"/health/breakers/{name}/open", headers=token)
    assert response.status_code == 200
    assert response.get_json()["storage"] == "redis"
    assert state_in(other, name) == "forced-open"

    own_redis.kill()
    response = client.post(f"/health/breakers/{name}/reset", headers=token)
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert "in this process only" in response.get_json()["detail"]
    assert state_in(answering, name) == "closed"  # this worker only
    assert state_in(other, name) == "forced-open"  # the last it knew
