"""@circuit_breaker with per-process (memory) state."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time

import pytest
from flask import Flask, abort
from werkzeug.exceptions import NotFound

from flask_resilience import CircuitOpen, Resilience, circuit_breaker
from flask_resilience.circuit import get_breaker
from tests.breakers.helpers import Flaky, resilient_app, unique


def test_opens_after_fail_max_consecutive_failures_and_refuses_without_calling() -> None:
    flaky = Flaky()
    guarded = circuit_breaker(unique("open"), fail_max=3, reset_timeout=60)(flaky)

    for _ in range(3):
        with pytest.raises(ConnectionError):  # the tripping call raises its own error
            guarded()
    with pytest.raises(CircuitOpen) as refused:
        guarded()

    assert flaky.calls == 3
    assert isinstance(refused.value.retry_after, int)
    assert 59 <= refused.value.retry_after <= 60
    assert refused.value.code == 503


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    flaky = Flaky()
    guarded = circuit_breaker(unique("reset"), fail_max=2, reset_timeout=60)(flaky)

    with pytest.raises(ConnectionError):
        guarded()
    flaky.failing = False
    guarded()
    flaky.failing = True
    with pytest.raises(ConnectionError):
        guarded()
    with pytest.raises(ConnectionError):  # second in a row: trips, but runs
        guarded()
    assert flaky.calls == 4


def test_half_opens_after_the_reset_timeout_then_closes_on_success() -> None:
    name = unique("half-open")
    flaky = Flaky()
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=0.2)(flaky)
    with pytest.raises(ConnectionError):
        guarded()
    with pytest.raises(CircuitOpen):
        guarded()

    time.sleep(0.25)
    flaky.failing = False
    assert guarded("back") == "back"
    assert get_breaker(name).state == "closed"


def test_a_failed_trial_opens_the_breaker_again() -> None:
    name = unique("trial-fails")
    flaky = Flaky()
    guarded = circuit_breaker(name, fail_max=2, reset_timeout=0.2)(flaky)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            guarded()
    time.sleep(0.25)

    with pytest.raises(ConnectionError):  # one failed trial is enough, not fail_max
        guarded()
    with pytest.raises(CircuitOpen):
        guarded()
    assert flaky.calls == 3


@pytest.mark.parametrize("half_open_calls", [1, 2])
def test_half_open_lets_only_half_open_calls_through_at_once(half_open_calls: int) -> None:
    name = unique("bounded")
    release = threading.Event()
    started = threading.Semaphore(0)
    state = {"failing": True}

    @circuit_breaker(name, fail_max=1, reset_timeout=0.2, half_open_calls=half_open_calls)
    def dependency() -> str:
        if state["failing"]:
            raise ConnectionError
        started.release()
        assert release.wait(5)
        return "ok"

    with pytest.raises(ConnectionError):
        dependency()
    state["failing"] = False
    time.sleep(0.25)

    threads = [threading.Thread(target=dependency) for _ in range(half_open_calls)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert started.acquire(timeout=5)
    with pytest.raises(CircuitOpen) as refused:
        dependency()
    assert refused.value.retry_after == 1
    release.set()
    for thread in threads:
        thread.join()
    assert dependency() == "ok"


def test_calls_through_a_closed_breaker_run_concurrently() -> None:
    # A lock held for the whole call would let one call at a time through.
    both_inside = threading.Barrier(2, timeout=5)
    errors: list[BaseException] = []

    @circuit_breaker(unique("concurrent"), fail_max=5, reset_timeout=60)
    def slow() -> None:
        both_inside.wait()

    def run() -> None:
        try:
            slow()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_fallback_answers_while_open_with_the_call_arguments() -> None:
    flaky = Flaky()
    guarded = circuit_breaker(
        unique("fallback"),
        fail_max=1,
        reset_timeout=60,
        fallback=lambda value="ok": f"cached {value}",
    )(flaky)
    with pytest.raises(ConnectionError):  # failures of admitted calls are not hidden
        guarded("a")
    assert guarded("b") == "cached b"
    assert flaky.calls == 1


def test_client_errors_and_excluded_exceptions_are_not_failures() -> None:
    name = unique("exclude")
    errors: list[Exception] = [NotFound(), KeyError("x"), NotFound(), KeyError("y")]

    @circuit_breaker(name, fail_max=1, reset_timeout=60, exclude=(KeyError,))
    def lookup() -> None:
        raise errors.pop(0)

    for expected in (NotFound, KeyError, NotFound, KeyError):
        with pytest.raises(expected):
            lookup()
    assert get_breaker(name).state == "closed"


def test_keyboard_interrupt_propagates_without_counting_and_frees_the_trial() -> None:
    name = unique("interrupt")
    outcomes: list[BaseException | None] = [ConnectionError(), KeyboardInterrupt(), None]

    @circuit_breaker(name, fail_max=1, reset_timeout=0.2)
    def dependency() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "ok"

    with pytest.raises(ConnectionError):
        dependency()
    time.sleep(0.25)
    with pytest.raises(KeyboardInterrupt):
        dependency()
    assert get_breaker(name).state == "half-open"
    assert dependency() == "ok"  # the interrupted trial gave its place back
    assert get_breaker(name).state == "closed"


def test_async_functions_get_an_async_guard() -> None:
    flaky = Flaky()

    async def fetch(value: str = "ok") -> str:
        return flaky(value)

    async def fallback(value: str = "ok") -> str:
        return "fallback"

    guarded = circuit_breaker(unique("async"), fail_max=1, reset_timeout=60, fallback=fallback)(
        fetch
    )
    assert inspect.iscoroutinefunction(guarded)
    with pytest.raises(ConnectionError):
        asyncio.run(guarded())
    assert asyncio.run(guarded()) == "fallback"
    assert flaky.calls == 1


def test_async_function_without_fallback_raises_circuit_open_and_a_sync_fallback_works() -> None:
    flaky = Flaky()

    async def fetch() -> str:
        return flaky()

    guarded = circuit_breaker(unique("async-open"), fail_max=1, reset_timeout=60)(fetch)
    with pytest.raises(ConnectionError):
        asyncio.run(guarded())
    with pytest.raises(CircuitOpen):
        asyncio.run(guarded())

    flaky.failing = False
    sync_fallback = circuit_breaker(unique("async-sync"), fallback=lambda: "plain")(fetch)
    assert asyncio.run(sync_fallback()) == "ok"


def test_an_async_fallback_for_a_sync_function_is_refused() -> None:
    async def fallback() -> str:
        return "x"

    with pytest.raises(TypeError, match="async"):
        circuit_breaker(unique("mismatch"), fallback=fallback)(lambda: "x")


def test_an_open_breaker_answers_503_problem_json_with_retry_after_in_a_view() -> None:
    app = resilient_app()
    name = unique("quote-service")

    @app.get("/api/quote")
    @circuit_breaker(name, fail_max=1, reset_timeout=30)
    def quote() -> str:
        raise ConnectionError("quote service down")

    app.testing = False  # let the 500 be rendered instead of raised
    client = app.test_client()
    assert client.get("/api/quote").status_code == 500
    response = client.get("/api/quote")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers.getlist("Retry-After") in (["29"], ["30"])
    body = response.get_json()
    assert body["status"] == 503
    assert body["title"] == "Service Unavailable"
    assert body["instance"] == "/api/quote"
    assert body["detail"].startswith("A service this request needs is unavailable")
    assert name not in response.get_data(as_text=True)  # internal names stay inside


def test_async_views_and_options_requests() -> None:
    app = resilient_app()
    flaky = Flaky()

    @app.route("/async", methods=["GET", "OPTIONS"])
    @circuit_breaker(unique("async-view"), fail_max=1, reset_timeout=30)
    async def view() -> str:
        await asyncio.sleep(0)
        return flaky()

    app.testing = False
    client = app.test_client()
    assert client.get("/async").status_code == 500
    assert client.get("/async").status_code == 503
    flaky.failing = False
    assert client.options("/async").status_code == 200  # preflights pass an open breaker


def test_defaults_come_from_the_app_config_and_breakers_are_listed() -> None:
    app = resilient_app(RESILIENCE_CIRCUIT_FAIL_MAX=2, RESILIENCE_CIRCUIT_RESET_TIMEOUT=7)
    name = unique("listed")
    flaky = Flaky()
    guarded = circuit_breaker(name)(flaky)
    resilience = Resilience()  # its methods read the current app's state

    with app.app_context():
        with pytest.raises(ConnectionError):
            guarded()
        entry = resilience.circuit_breakers()[name]
        assert entry == {
            "state": "closed",
            "storage": "memory",
            "calls": 1,
            "failure_rate": 100.0,
            "slow_call_rate": None,  # calls are not timed
            "consecutive_failures": 1,
            "opened_at": None,
            "retry_after": None,
            "failure_rate_threshold": 50,
            "slow_call_duration": None,
            "slow_call_rate_threshold": 100,
            "minimum_calls": 10,
            "window_size": 20,
            "fail_max": 2,
            "reset_timeout": 7,
            "half_open_calls": 1,
        }
        with pytest.raises(ConnectionError):
            guarded()
        entry = resilience.circuit_breakers()[name]
        assert entry["state"] == "open"
        assert abs(entry["opened_at"] - time.time()) < 5

    # Outside an app: a per-process breaker with the built-in defaults.
    assert get_breaker(name).policy.fail_max == 5
    assert get_breaker(name).state == "closed"


def test_functions_naming_one_breaker_share_it() -> None:
    name = unique("shared")
    first = circuit_breaker(name, fail_max=1, reset_timeout=60)(Flaky())
    second = circuit_breaker(name, fail_max=1, reset_timeout=60)(lambda: "never called")
    with pytest.raises(ConnectionError):
        first()
    with pytest.raises(CircuitOpen):
        second()
    with pytest.raises(ValueError, match="already defined"):
        circuit_breaker(name, fail_max=2)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"fail_max": 0}, ValueError),
        ({"reset_timeout": -1}, ValueError),
        ({"half_open_calls": 0}, ValueError),
        ({"exclude": (KeyboardInterrupt,)}, TypeError),
    ],
)
def test_wrong_arguments_are_refused(arguments: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        circuit_breaker(unique("wrong"), **arguments)  # type: ignore[arg-type]


def test_unknown_breaker_and_direct_call() -> None:
    with pytest.raises(LookupError):
        get_breaker(unique("never-defined"))
    name = unique("direct")
    circuit_breaker(name, fail_max=1, reset_timeout=60)
    breaker = get_breaker(name)
    assert breaker.call(lambda x: x * 2, 21) == 42
    with pytest.raises(ConnectionError):
        breaker.call(Flaky())
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: None)


def test_circuit_breakers_needs_a_registered_app() -> None:
    with Flask(__name__).app_context(), pytest.raises(RuntimeError, match="init_app"):
        Resilience().circuit_breakers()


def test_abort_in_a_guarded_view_keeps_its_status() -> None:
    app = resilient_app()

    @app.get("/missing")
    @circuit_breaker(unique("abort"), fail_max=1, reset_timeout=60)
    def missing() -> str:
        abort(404)

    client = app.test_client()
    assert client.get("/missing").status_code == 404
    assert client.get("/missing").status_code == 404


def test_failures_that_finish_after_the_breaker_opened_do_not_reopen_it() -> None:
    name = unique("late-failure")
    both_inside = threading.Barrier(2, timeout=5)
    first_done = threading.Event()
    order: list[str] = []

    @circuit_breaker(name, fail_max=1, reset_timeout=60)
    def dependency(label: str) -> None:
        both_inside.wait()
        if label == "late":
            assert first_done.wait(5)
        order.append(label)
        raise ConnectionError(label)

    def run(label: str) -> None:
        try:
            dependency(label)
        except ConnectionError:
            first_done.set()

    threads = [threading.Thread(target=run, args=(label,)) for label in ("early", "late")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    breaker = get_breaker(name)
    assert order == ["early", "late"]
    assert breaker.state == "open"
    snapshot = breaker.snapshot()
    assert snapshot["consecutive_failures"] == 1  # the late failure is not counted
    assert 59 <= snapshot["retry_after"] <= 60


def test_an_interrupted_call_in_a_closed_breaker_counts_for_nothing() -> None:
    name = unique("interrupt-closed")

    @circuit_breaker(name, fail_max=1, reset_timeout=60)
    def dependency() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dependency()
    assert get_breaker(name).state == "closed"
    assert get_breaker(name).snapshot()["consecutive_failures"] == 0
    assert get_breaker(name).snapshot()["calls"] == 0
