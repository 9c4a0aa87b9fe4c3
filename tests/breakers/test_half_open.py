"""Half-open: ``half_open_calls`` trials, all of which must succeed to close."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_resilience import CircuitOpen, circuit_breaker
from flask_resilience.circuit import get_breaker

from .circuit_helpers import Dependency, breaker_name

RESET = 0.2


def opened(name: str, dependency: Dependency, **options: Any) -> Callable[..., str]:
    """``dependency`` behind a breaker that one failure opened, its reset timeout passed."""
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=RESET, **options)(dependency)
    dependency.failing = True
    with pytest.raises(ConnectionError):
        guarded()
    with pytest.raises(CircuitOpen):
        guarded()
    time.sleep(RESET + 0.05)
    dependency.failing = False
    return guarded


def test_three_trials_close_it_only_after_the_third_success() -> None:
    name = breaker_name("three-trials")
    guarded = opened(name, Dependency(), half_open_calls=3)
    breaker = get_breaker(name)

    assert guarded() == "ok"
    assert breaker.state == "half-open"
    assert guarded() == "ok"
    assert breaker.state == "half-open"
    assert guarded() == "ok"
    assert breaker.state == "closed"
    assert breaker.snapshot()["calls"] == 0  # a new closed period: an empty window


@pytest.mark.parametrize("failing_trial", [0, 1, 2])
def test_one_failed_trial_of_three_opens_it_again(failing_trial: int) -> None:
    name = breaker_name("trial-fails")
    dependency = Dependency()
    guarded = opened(name, dependency, half_open_calls=3)

    for number in range(failing_trial):
        assert guarded() == "ok", number
    dependency.failing = True
    with pytest.raises(ConnectionError):
        guarded()
    with pytest.raises(CircuitOpen) as refused:
        guarded()
    assert refused.value.state == "open"
    snapshot = get_breaker(name).snapshot()
    assert snapshot["state"] == "open"
    assert 0 < snapshot["retry_after"] <= RESET  # a full reset timeout from the failure


def test_a_slow_trial_opens_it_again() -> None:
    name = breaker_name("slow-trial")
    dependency = Dependency()
    guarded = opened(name, dependency, half_open_calls=2, slow_call_duration=0.05)
    assert guarded() == "ok"
    dependency.delay = 0.08
    assert guarded() == "ok"  # slow, but its value is returned
    assert get_breaker(name).state == "open"


def test_only_the_trials_pass_at_once_and_a_fourth_is_refused() -> None:
    name = breaker_name("trial-places")
    inside = threading.Semaphore(0)
    release = threading.Event()
    outcome = {"failing": True}

    @circuit_breaker(name, fail_max=1, reset_timeout=RESET, half_open_calls=3)
    def dependency() -> str:
        if outcome["failing"]:
            raise ConnectionError
        inside.release()
        assert release.wait(5)
        return "ok"

    with pytest.raises(ConnectionError):
        dependency()
    outcome["failing"] = False
    time.sleep(RESET + 0.05)
    threads = [threading.Thread(target=dependency) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert inside.acquire(timeout=5)
    with pytest.raises(CircuitOpen) as refused:
        dependency()
    assert (refused.value.state, refused.value.retry_after) == ("half-open", 1)
    release.set()
    for thread in threads:
        thread.join()
    assert get_breaker(name).state == "closed"


def test_an_interrupted_trial_gives_its_place_back() -> None:
    name = breaker_name("interrupted")
    outcomes: list[BaseException | None] = [KeyboardInterrupt(), None, None]

    def dependency() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "ok"

    flaky = Dependency()
    guarded = opened(name, flaky, half_open_calls=2)
    interruptible = circuit_breaker(name, fail_max=1, reset_timeout=RESET, half_open_calls=2)(
        dependency
    )
    with pytest.raises(KeyboardInterrupt):
        interruptible()
    assert get_breaker(name).state == "half-open"
    assert interruptible() == "ok"
    assert guarded() == "ok"  # the second place: the interrupted trial left it
    assert get_breaker(name).state == "closed"


def test_a_cancelled_async_trial_gives_its_place_back() -> None:
    name = breaker_name("cancelled")
    dependency = Dependency()

    async def fetch(wait: float) -> str:
        await asyncio.sleep(wait)
        return dependency()

    guarded = circuit_breaker(name, fail_max=1, reset_timeout=RESET)(fetch)

    async def scenario() -> list[str]:
        dependency.failing = True
        with pytest.raises(ConnectionError):
            await guarded(0)
        await asyncio.sleep(RESET + 0.05)
        dependency.failing = False
        trial = asyncio.ensure_future(guarded(5))
        await asyncio.sleep(0.05)
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
        states = [get_breaker(name).state]
        assert await guarded(0) == "ok"
        return [*states, get_breaker(name).state]

    assert asyncio.run(scenario()) == ["half-open", "closed"]


def call_in(app: Flask, func: Callable[..., Any], *args: Any) -> Any:
    with app.app_context():
        return func(*args)


def state_in(app: Flask, name: str) -> str:
    with app.app_context():
        return get_breaker(name).state


@pytest.mark.redis
def test_three_trials_from_two_apps_close_it_for_both(
    redis_url: str, shared_app: Callable[..., Flask]
) -> None:
    first, second = shared_app(redis_url), shared_app(redis_url)
    name = breaker_name("shared-trials")
    dependency = Dependency(failing=True)
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=RESET, half_open_calls=3)(dependency)
    with pytest.raises(ConnectionError):
        call_in(first, guarded)
    with pytest.raises(CircuitOpen):
        call_in(second, guarded)
    time.sleep(RESET + 0.05)
    dependency.failing = False

    for app in (second, first):
        assert call_in(app, guarded) == "ok"
        assert state_in(first, name) == state_in(second, name) == "half-open"
    assert call_in(second, guarded) == "ok"
    assert state_in(first, name) == state_in(second, name) == "closed"


@pytest.mark.redis
def test_a_failed_trial_in_one_app_opens_it_for_the_other(
    redis_url: str, shared_app: Callable[..., Flask]
) -> None:
    first, second = shared_app(redis_url), shared_app(redis_url)
    name = breaker_name("shared-trial-fails")
    dependency = Dependency(failing=True)
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=RESET, half_open_calls=3)(dependency)
    with pytest.raises(ConnectionError):
        call_in(first, guarded)
    time.sleep(RESET + 0.05)
    dependency.failing = False
    assert call_in(first, guarded) == "ok"
    assert call_in(second, guarded) == "ok"
    dependency.failing = True
    with pytest.raises(ConnectionError):
        call_in(second, guarded)
    with pytest.raises(CircuitOpen) as refused:
        call_in(first, guarded)
    assert refused.value.state == "open"
    assert dependency.calls == 4
