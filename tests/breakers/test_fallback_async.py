"""Fallbacks, and coroutine functions under the new options."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from flask_resilience import CircuitOpen, circuit_breaker
from flask_resilience.circuit import get_breaker

from .circuit_helpers import Dependency, app_with, breaker_name


def test_a_rate_breaker_answers_with_its_fallback_once_open_and_raises_before() -> None:
    dependency = Dependency(failing=True)
    calls: list[str] = []

    def cached(value: str = "ok") -> str:
        calls.append(value)
        return f"cached {value}"

    name = breaker_name("rate-fallback")
    guarded = circuit_breaker(
        name, failure_rate_threshold=100, minimum_calls=3, window_size=3, fallback=cached
    )(dependency)
    for value in ("a", "b", "c"):
        with pytest.raises(ConnectionError):  # admitted calls keep their error
            guarded(value)
    assert calls == []
    assert guarded("d") == "cached d"
    assert calls == ["d"]
    assert dependency.calls == 3


def test_a_fallback_is_not_asked_while_half_open_trials_pass() -> None:
    dependency = Dependency(failing=True)
    name = breaker_name("trial-fallback")
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=0, fallback=lambda: "cached")(
        dependency
    )
    with pytest.raises(ConnectionError):
        guarded()
    dependency.failing = False
    assert guarded() == "ok"  # the trial runs the function itself
    assert get_breaker(name).state == "closed"


def test_slow_async_calls_open_the_breaker_and_an_async_fallback_answers() -> None:
    name = breaker_name("async-slow")
    delays = [0.08, 0.08, 0.0]

    async def fetch() -> str:
        await asyncio.sleep(delays.pop(0) if delays else 0)
        return "fresh"

    async def fallback() -> str:
        await asyncio.sleep(0)
        return "stale"

    guarded = circuit_breaker(
        name,
        slow_call_duration=0.05,
        slow_call_rate_threshold=60,
        minimum_calls=3,
        window_size=3,
        fallback=fallback,
    )(fetch)
    assert inspect.iscoroutinefunction(guarded)

    async def scenario() -> list[str]:
        return [await guarded() for _ in range(5)]

    # Two slow of three: 67 % >= 60 %.
    assert asyncio.run(scenario()) == ["fresh", "fresh", "fresh", "stale", "stale"]
    assert get_breaker(name).snapshot()["slow_call_rate"] == 66.7


def test_async_results_and_exceptions_are_judged_like_plain_ones() -> None:
    name = breaker_name("async-judged")
    answers: list[object] = [None, ValueError("bad input"), None]

    async def lookup() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    guarded = circuit_breaker(
        name,
        fail_max=2,
        failure=lambda error: not isinstance(error, ValueError),
        failure_result=lambda value: value is None,
    )(lookup)

    async def scenario() -> None:
        assert await guarded() is None
        with pytest.raises(ValueError):
            await guarded()  # not a failure: the count starts again
        assert await guarded() is None
        assert get_breaker(name).state == "closed"

    asyncio.run(scenario())
    answers.append(None)

    async def second_none() -> None:
        assert await guarded() is None

    asyncio.run(second_none())
    assert get_breaker(name).state == "open"


def test_an_async_view_behind_a_forced_open_breaker_answers_503() -> None:
    app = app_with()
    name = breaker_name("async-view")

    @app.get("/quote")
    @circuit_breaker(name, reset_timeout=20)
    async def quote() -> str:
        await asyncio.sleep(0)
        return "quote"

    client = app.test_client()
    assert client.get("/quote").get_data(as_text=True) == "quote"
    with app.app_context():
        get_breaker(name).force_open()
    response = client.get("/quote")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "20"
    with app.app_context():
        get_breaker(name).reset()
    assert client.get("/quote").status_code == 200


def test_a_direct_call_through_the_breaker_object() -> None:
    name = breaker_name("direct")
    circuit_breaker(name, fail_max=1)
    breaker = get_breaker(name)
    assert breaker.call(lambda value: value * 2, 21) == 42
    with pytest.raises(ConnectionError):
        breaker.call(Dependency(failing=True))
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: None)
