"""With Redis storage: each process's own window, the shared transitions, what they cost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis as redis_lib
from flask import Flask

from flask_resilience import CircuitOpen, ConfigurationError, circuit_breaker
from flask_resilience.circuit import get_breaker

from ..support.servers import RedisServer
from .circuit_helpers import Dependency, app_with, breaker_name

pytestmark = pytest.mark.redis


def commands(uri: str) -> dict[str, int]:
    """Calls of each command since the statistics were last reset."""
    client = redis_lib.Redis.from_url(uri)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {key.removeprefix("cmdstat_"): value["calls"] for key, value in stats.items()}


def reset_statistics(uri: str) -> None:
    client = redis_lib.Redis.from_url(uri)
    try:
        client.config_resetstat()
    finally:
        client.close()


def test_calls_in_the_closed_state_cost_one_read_per_sync_interval_and_no_write(
    own_redis: RedisServer, shared_app: Callable[..., Flask]
) -> None:
    app = shared_app(own_redis.url, RESILIENCE_CIRCUIT_SYNC_INTERVAL=60)
    name = breaker_name("cost")
    guarded = circuit_breaker(name)(Dependency())
    reset_statistics(own_redis.url)
    with app.app_context():
        for _ in range(500):
            assert guarded() == "ok"
    used = commands(own_redis.url)
    for handshake_or_statistics in ("hello", "client|setinfo", "config|resetstat", "info"):
        used.pop(handshake_or_statistics, None)
    assert used == {"hmget": 1}


def test_a_trip_in_one_app_reaches_another_within_its_sync_interval(
    own_redis: RedisServer, shared_app: Callable[..., Flask]
) -> None:
    interval = 0.3
    tripping = shared_app(own_redis.url)
    watching = shared_app(own_redis.url, RESILIENCE_CIRCUIT_SYNC_INTERVAL=interval)
    name = breaker_name("reach")
    dependency = Dependency()
    guarded = circuit_breaker(name, fail_max=3, reset_timeout=60)(dependency)
    with watching.app_context():
        assert guarded() == "ok"

    dependency.failing = True
    with tripping.app_context():
        for _ in range(3):
            with pytest.raises(ConnectionError):
                guarded()
    opened_at = time.monotonic()
    with watching.app_context():
        while time.monotonic() - opened_at < interval + 0.5:
            try:
                guarded()
            except ConnectionError:
                time.sleep(0.01)  # not yet seen: this call went to the dependency
            except CircuitOpen:
                break
        else:
            pytest.fail("the other app never saw the breaker open")
        assert get_breaker(name).snapshot()["calls"] >= 1  # its own window
    assert time.monotonic() - opened_at < interval + 0.2


def test_each_app_keeps_its_own_window(redis_url: str, shared_app: Callable[..., Flask]) -> None:
    first, second = shared_app(redis_url), shared_app(redis_url)
    name = breaker_name("own-window")
    dependency = Dependency(failing=True)
    guarded = circuit_breaker(
        name, failure_rate_threshold=50, minimum_calls=4, window_size=4, fail_max=100
    )(dependency)
    for app in (first, second, first, second, first, second):  # 3 failures each
        with app.app_context(), pytest.raises(ConnectionError):
            guarded()
    for app in (first, second):
        with app.app_context():
            snapshot = get_breaker(name).snapshot()
            assert (snapshot["state"], snapshot["calls"]) == ("closed", 3)
    with first.app_context(), pytest.raises(ConnectionError):
        guarded()  # the fourth of the first app's own calls
    with second.app_context():
        assert get_breaker(name).state == "open"


def test_a_trip_after_redis_lost_the_hash_starts_the_shared_record_again(
    own_redis: RedisServer, shared_app: Callable[..., Flask]
) -> None:
    app = shared_app(own_redis.url, RESILIENCE_CIRCUIT_SYNC_INTERVAL=60)
    name = breaker_name("lost-hash")
    dependency = Dependency()
    guarded = circuit_breaker(name, fail_max=2, reset_timeout=60)(dependency)
    with app.app_context():
        breaker = get_breaker(name)
        breaker.force_open()
        breaker.reset()  # two transitions: this app saw version 2
        assert guarded() == "ok"
        client = redis_lib.Redis.from_url(own_redis.url)
        try:
            client.flushall()  # what a restart without persistence leaves
            dependency.failing = True
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    guarded()
            assert client.hget(f"flask_resilience:circuit:{name}", "state") == b"open"
        finally:
            client.close()
    with shared_app(own_redis.url).app_context(), pytest.raises(CircuitOpen):
        guarded()


@pytest.mark.parametrize("value", [-0.5, "1s", None])
def test_a_wrong_sync_interval_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigurationError, match="RESILIENCE_CIRCUIT_SYNC_INTERVAL"):
        app_with(RESILIENCE_CIRCUIT_SYNC_INTERVAL=value)


def test_a_process_writes_its_forced_state_back_where_redis_lost_it(
    own_redis: RedisServer, shared_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = shared_app(own_redis.url)
    name = breaker_name("write-back")
    circuit_breaker(name)
    client = redis_lib.Redis.from_url(own_redis.url)
    try:
        with app.app_context():
            get_breaker(name).force_closed()
            client.flushall()
            assert get_breaker(name).state == "forced-closed"
        assert client.hget(f"flask_resilience:circuit:{name}", "forced") == b"closed"
    finally:
        client.close()
    assert "had lost its forced state; this process wrote it back (forced-closed)" in caplog.text
    with shared_app(own_redis.url).app_context():
        assert get_breaker(name).state == "forced-closed"


def test_half_open_goes_on_in_the_process_while_redis_is_down(
    redis: RedisServer, shared_app: Callable[..., Flask]
) -> None:
    app = shared_app(redis.url)
    name = breaker_name("half-open-alone")
    dependency = Dependency(failing=True)
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=0.2, half_open_calls=2)(dependency)
    with app.app_context():
        with pytest.raises(ConnectionError):
            guarded()  # opened in Redis
        redis.kill()
        time.sleep(0.25)
        dependency.failing = False
        assert guarded() == "ok"  # a trial of this process's own
        assert get_breaker(name).snapshot()["state"] == "half-open"
        assert guarded() == "ok"
        snapshot = get_breaker(name).snapshot()
        assert (snapshot["state"], snapshot["storage"]) == ("closed", "memory")


def test_an_interrupted_trial_gives_its_shared_place_back(
    redis_url: str, shared_app: Callable[..., Flask]
) -> None:
    first, second = shared_app(redis_url), shared_app(redis_url)
    name = breaker_name("shared-interrupt")
    outcomes: list[BaseException | None] = [ConnectionError(), KeyboardInterrupt(), None]

    @circuit_breaker(name, fail_max=1, reset_timeout=0.2)
    def dependency() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "ok"

    with first.app_context(), pytest.raises(ConnectionError):
        dependency()
    time.sleep(0.25)
    with first.app_context(), pytest.raises(KeyboardInterrupt):
        dependency()  # took the only trial, then gave it back
    with second.app_context():
        assert dependency() == "ok"
        assert get_breaker(name).state == "closed"


def test_a_half_open_refusal_is_not_asked_of_redis_again_at_once(
    own_redis: RedisServer, shared_app: Callable[..., Flask]
) -> None:
    holder, asker = shared_app(own_redis.url), shared_app(own_redis.url)
    name = breaker_name("asked-once")
    inside, release = threading.Event(), threading.Event()
    outcome = {"failing": True}

    @circuit_breaker(name, fail_max=1, reset_timeout=0.2)
    def dependency() -> str:
        if outcome["failing"]:
            raise ConnectionError
        inside.set()
        assert release.wait(5)
        return "ok"

    with holder.app_context(), pytest.raises(ConnectionError):
        dependency()
    outcome["failing"] = False
    time.sleep(0.25)

    def hold_the_trial() -> None:
        with holder.app_context():
            dependency()

    trial = threading.Thread(target=hold_the_trial)
    trial.start()
    try:
        assert inside.wait(5)
        with asker.app_context():
            with pytest.raises(CircuitOpen):
                dependency()  # asked Redis: the trial is taken
            reset_statistics(own_redis.url)
            for _ in range(20):
                with pytest.raises(CircuitOpen) as refused:
                    dependency()
                assert refused.value.state == "half-open"
        assert "evalsha" not in commands(own_redis.url)
    finally:
        release.set()
        trial.join()


def test_a_forced_state_is_written_into_a_record_another_process_made_after_the_loss(
    own_redis: RedisServer, shared_app: Callable[..., Flask]
) -> None:
    holder, newcomer = shared_app(own_redis.url), shared_app(own_redis.url)
    name = breaker_name("new-record")
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=60)(Dependency(failing=True))
    with holder.app_context():
        get_breaker(name).force_open()
    flush(own_redis.url)
    with newcomer.app_context():  # never knew it: it sees closed, and trips
        with pytest.raises(ConnectionError):
            guarded()
        assert get_breaker(name).state == "open"
    with holder.app_context():
        assert get_breaker(name).state == "forced-open"  # written back, over the trip
    with newcomer.app_context():
        assert get_breaker(name).state == "forced-open"


def test_a_release_made_after_the_loss_wins_over_what_a_process_knew(
    own_redis: RedisServer, shared_app: Callable[..., Flask]
) -> None:
    holder, operator = shared_app(own_redis.url), shared_app(own_redis.url)
    name = breaker_name("released-after-loss")
    circuit_breaker(name)
    with holder.app_context():
        get_breaker(name).force_open()
    flush(own_redis.url)
    with operator.app_context():
        get_breaker(name).reset()
    with holder.app_context():
        assert get_breaker(name).state == "closed"
    with operator.app_context():
        assert get_breaker(name).state == "closed"


def flush(uri: str) -> None:
    """What a restart of Redis without persistence leaves."""
    client = redis_lib.Redis.from_url(uri)
    try:
        client.flushall()
    finally:
        client.close()
