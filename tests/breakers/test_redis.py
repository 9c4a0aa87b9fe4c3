"""Circuit breaker state shared through a real Redis, and what happens when Redis dies."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask

from flask_resilience import CircuitOpen, circuit_breaker
from flask_resilience.circuit import Breakers, breaker_states
from flask_resilience.circuit import shared as circuit_shared
from flask_resilience.state import get_state
from tests.breakers.helpers import Flaky, resilient_app, unique
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis


def breakers(app: Flask) -> dict[str, dict[str, Any]]:
    with app.app_context():
        return breaker_states()


def call_in(app: Flask, func: Callable[..., Any], *args: Any) -> Any:
    with app.app_context():
        return func(*args)


def test_a_flapping_dependency_opens_half_opens_and_closes_one_breaker_for_two_apps(
    redis_url: str,
) -> None:
    first, second = (resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI=redis_url) for _ in range(2))
    name = unique("flapping")
    flaky = Flaky()
    guarded = circuit_breaker(name, fail_max=3, reset_timeout=0.2)(flaky)

    with pytest.raises(ConnectionError):
        call_in(second, guarded)
    for _ in range(2):  # each keeps its own window: the first app's failures open it
        with pytest.raises(ConnectionError):
            call_in(first, guarded)
    assert breakers(second)[name]["state"] == "closed"
    with pytest.raises(ConnectionError):
        call_in(first, guarded)
    assert breakers(second)[name]["state"] == "open"
    with pytest.raises(CircuitOpen):
        call_in(second, guarded)  # opened by the first app's call
    assert flaky.calls == 4

    time.sleep(0.25)
    with pytest.raises(ConnectionError):  # the trial, from the second app, fails
        call_in(second, guarded)
    with pytest.raises(CircuitOpen):
        call_in(first, guarded)

    time.sleep(0.25)
    flaky.failing = False
    assert call_in(first, guarded, "recovered") == "recovered"
    for app in (first, second):
        entry = breakers(app)[name]
        assert entry["state"] == "closed"
        assert entry["consecutive_failures"] == 0
        assert entry["storage"] == "redis"
    assert call_in(second, guarded) == "ok"


def test_a_new_app_or_process_keeps_the_state_others_stored(redis_url: str) -> None:
    name = unique("late")
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=60)(Flaky())
    with pytest.raises(ConnectionError):
        call_in(resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI=redis_url), guarded)

    late = resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI=redis_url)  # a worker started afterwards
    assert breakers(late)[name]["state"] == "open"
    with pytest.raises(CircuitOpen) as refused:
        call_in(late, guarded)
    assert refused.value.retry_after in {59, 60}


def test_each_breaker_has_its_own_redis_namespace(redis_url: str) -> None:
    app = resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI=redis_url)
    failing, healthy = unique("ns-failing"), unique("ns-healthy")
    guarded_failing = circuit_breaker(failing, fail_max=1, reset_timeout=60)(Flaky())
    guarded_healthy = circuit_breaker(healthy, fail_max=1, reset_timeout=60)(lambda: "ok")
    with pytest.raises(ConnectionError):
        call_in(app, guarded_failing)
    assert call_in(app, guarded_healthy) == "ok"

    client = redis_lib.Redis.from_url(redis_url)
    try:
        stored = client.hgetall(f"flask_resilience:circuit:{failing}")
        assert stored[b"state"] == b"open"
        assert client.hget(f"flask_resilience:circuit:{healthy}", "state") in {None, b"closed"}
    finally:
        client.close()


def test_half_open_trials_are_bounded_across_apps(redis_url: str) -> None:
    first, second = (resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI=redis_url) for _ in range(2))
    name = unique("trial-shared")
    inside, release = threading.Event(), threading.Event()
    state = {"failing": True}

    @circuit_breaker(name, fail_max=1, reset_timeout=0.2)
    def dependency() -> str:
        if state["failing"]:
            raise ConnectionError
        inside.set()
        assert release.wait(5)
        return "ok"

    with pytest.raises(ConnectionError):
        call_in(first, dependency)
    state["failing"] = False
    time.sleep(0.25)
    trial = threading.Thread(target=call_in, args=(first, dependency))
    trial.start()
    assert inside.wait(5)
    with pytest.raises(CircuitOpen):
        call_in(second, dependency)
    release.set()
    trial.join()
    assert breakers(second)[name]["state"] == "closed"


WORKER = """
import sys, time
from flask import Flask
from flask_resilience import Resilience, circuit_breaker

app = Flask("worker")
app.config["RESILIENCE_CIRCUIT_STORAGE_URI"] = sys.argv[1]
Resilience(app)

@circuit_breaker(sys.argv[2], fail_max=1, reset_timeout=0.2)
def dependency():
    print("inside", flush=True)
    time.sleep(60)

with app.app_context():
    dependency()
"""


def test_a_trial_lost_with_a_killed_worker_is_given_back_after_its_lease(redis_url: str) -> None:
    app = resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI=redis_url)
    name = unique("lost-trial")
    flaky = Flaky()
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=0.2)(flaky)
    with pytest.raises(ConnectionError):
        call_in(app, guarded)
    time.sleep(0.25)

    with subprocess.Popen(
        [sys.executable, "-c", WORKER, redis_url, name], stdout=subprocess.PIPE, text=True
    ) as worker:
        try:
            assert worker.stdout is not None
            assert worker.stdout.readline() == "inside\n"  # the worker holds the only trial
        finally:
            worker.kill()
    trial_taken = time.monotonic()
    with pytest.raises(CircuitOpen):
        call_in(app, guarded)

    time.sleep(max(0.0, 1.05 - (time.monotonic() - trial_taken)))  # the lease: 1 s
    flaky.failing = False
    assert call_in(app, guarded) == "ok"
    assert breakers(app)[name]["state"] == "closed"


def test_redis_killed_while_a_breaker_is_in_use(
    redis: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(circuit_shared, "_RETRY_REDIS_AFTER", (0.2, 0.4))
    app = resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI=redis.url)
    name = unique("redis-dies")
    flaky = Flaky()
    flaky.failing = False
    guarded = circuit_breaker(name, fail_max=2, reset_timeout=60)(flaky)
    assert call_in(app, guarded) == "ok"
    assert breakers(app)[name]["storage"] == "redis"

    redis.kill()
    caplog.set_level(logging.INFO)
    assert call_in(app, guarded) == "ok"  # no error from the breaker itself
    assert breakers(app)[name]["storage"] == "memory"
    assert any(
        "unreachable" in record.getMessage() and record.levelno == logging.WARNING
        for record in caplog.records
    )

    flaky.failing = True  # the breaker still protects, with this process's state
    for _ in range(2):
        with pytest.raises(ConnectionError):
            call_in(app, guarded)
    with pytest.raises(CircuitOpen):
        call_in(app, guarded)
    calls = flaky.calls

    redis.restart()
    time.sleep(0.5)
    flaky.failing = False
    assert call_in(app, guarded) == "ok"  # Redis's state (closed) is used again
    assert breakers(app)[name]["storage"] == "redis"
    assert flaky.calls == calls + 1
    assert any("reachable again" in record.getMessage() for record in caplog.records)


def test_an_app_starts_and_its_breakers_work_while_redis_is_down(redis: RedisServer) -> None:
    redis.kill()
    app = resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI=redis.url)
    name = unique("down-at-start")
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=60)(Flaky())
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        call_in(app, guarded)
    with pytest.raises(CircuitOpen):
        call_in(app, guarded)
    assert time.monotonic() - started < 2
    assert breakers(app)[name]["storage"] == "memory"


def test_the_password_in_the_storage_uri_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    uri = "redis://user:secret@127.0.0.1:1/0"  # nothing listens on port 1
    app = resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI=uri)
    guarded = circuit_breaker(unique("password"), fail_max=1)(lambda: "ok")
    caplog.set_level(logging.WARNING)
    assert call_in(app, guarded) == "ok"
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "unreachable" in messages
    assert "secret" not in messages
    assert "user:***@127.0.0.1:1" in messages


def test_a_breaker_opened_by_hand_without_a_time_lets_a_trial_through(redis_url: str) -> None:
    app = resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI=redis_url)
    name = unique("by-hand")
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=60)(lambda: "ok")
    client = redis_lib.Redis.from_url(redis_url)
    try:
        client.hset(f"flask_resilience:circuit:{name}", "state", "open")
    finally:
        client.close()
    assert breakers(app)[name]["state"] == "open"
    assert call_in(app, guarded) == "ok"
    assert breakers(app)[name]["state"] == "closed"


def test_commands_failing_together_count_as_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    app = resilient_app(RESILIENCE_CIRCUIT_STORAGE_URI="redis://127.0.0.1:1/0")
    link = get_state(app).get(Breakers).link
    assert link is not None
    caplog.set_level(logging.WARNING)
    errors = [OSError("refused") for _ in range(3)]
    threads = [threading.Thread(target=link.failed, args=(error,)) for error in errors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    assert "again in 1 s" in caplog.text  # not doubled by the other two
