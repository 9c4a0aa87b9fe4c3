"""What opens a breaker: the failure rate, the slow-call rate, consecutive failures,
and which outcomes count as failures."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest
from werkzeug.exceptions import BadRequest, InternalServerError

from flask_resilience import CircuitOpen, circuit_breaker
from flask_resilience.circuit import get_breaker

from .circuit_helpers import Dependency, breaker_name


def alternate(guarded: Any, dependency: Dependency, calls: int) -> list[str]:
    """Call ``guarded`` ``calls`` times, failing every other call; what each call did."""
    outcomes = []
    for number in range(calls):
        dependency.failing = number % 2 == 0
        try:
            guarded()
        except ConnectionError:
            outcomes.append("failed")
        except CircuitOpen:
            outcomes.append("refused")
        else:
            outcomes.append("ok")
    return outcomes


def test_alternating_failures_and_successes_open_a_rate_breaker() -> None:
    dependency = Dependency()
    name = breaker_name("rate")
    guarded = circuit_breaker(
        name, failure_rate_threshold=50, minimum_calls=10, window_size=20, reset_timeout=60
    )(dependency)

    outcomes = alternate(guarded, dependency, 12)

    # Nine calls are too few to judge; the tenth (a success) makes 5 failures of 10.
    assert outcomes[:10] == ["failed", "ok"] * 5
    assert outcomes[10:] == ["refused", "refused"]
    assert dependency.calls == 10
    snapshot = get_breaker(name).snapshot()
    assert snapshot["state"] == "open"
    assert (snapshot["calls"], snapshot["failure_rate"]) == (10, 50.0)
    assert snapshot["consecutive_failures"] == 0


def test_alternating_failures_and_successes_never_open_a_fail_max_only_breaker() -> None:
    dependency = Dependency()
    name = breaker_name("fail-max-only")
    guarded = circuit_breaker(name, failure_rate_threshold=None, fail_max=2, reset_timeout=60)(
        dependency
    )

    assert alternate(guarded, dependency, 200) == ["failed", "ok"] * 100
    assert get_breaker(name).state == "closed"

    dependency.failing = True  # two in a row do open it
    for _ in range(2):
        with pytest.raises(ConnectionError):
            guarded()
    with pytest.raises(CircuitOpen):
        guarded()


def test_a_rate_below_the_threshold_keeps_it_closed_and_old_calls_leave_the_window() -> None:
    dependency = Dependency()
    name = breaker_name("window")
    guarded = circuit_breaker(
        name, failure_rate_threshold=50, minimum_calls=4, window_size=4, fail_max=100
    )(dependency)

    for failing in (True, False, False, False, True, False, False):  # never 2 of the last 4
        dependency.failing = failing
        with contextlib.suppress(ConnectionError):
            guarded()
    assert get_breaker(name).snapshot()["failure_rate"] == 25.0
    dependency.failing = True
    with pytest.raises(ConnectionError):
        guarded()  # two of the last four
    with pytest.raises(CircuitOpen):
        guarded()


def test_slow_calls_open_a_slow_call_breaker() -> None:
    dependency = Dependency(delay=0.08)
    name = breaker_name("slow")
    guarded = circuit_breaker(
        name,
        slow_call_duration=0.05,
        slow_call_rate_threshold=60,
        minimum_calls=5,
        window_size=5,
        reset_timeout=60,
    )(dependency)

    for _ in range(2):
        assert guarded() == "ok"  # a slow call still returns its value
    dependency.delay = 0.0
    for _ in range(2):
        assert guarded() == "ok"
    assert get_breaker(name).state == "closed"
    dependency.delay = 0.08
    assert guarded() == "ok"  # 3 slow of 5: 60 %
    with pytest.raises(CircuitOpen):
        guarded()
    snapshot = get_breaker(name).snapshot()
    assert (snapshot["state"], snapshot["slow_call_rate"], snapshot["failure_rate"]) == (
        "open",
        60.0,
        0.0,
    )


def test_quick_calls_keep_a_slow_call_breaker_closed() -> None:
    name = breaker_name("quick")
    guarded = circuit_breaker(
        name, slow_call_duration=0.5, slow_call_rate_threshold=10, minimum_calls=3, window_size=3
    )(Dependency())
    for _ in range(10):
        assert guarded() == "ok"
    assert get_breaker(name).snapshot()["slow_call_rate"] == 0.0


def test_the_failure_predicate_decides_which_exceptions_count() -> None:
    name = breaker_name("predicate")
    errors: list[Exception] = [LookupError("not there"), TimeoutError(), LookupError("again")]

    @circuit_breaker(
        name, fail_max=2, failure=lambda error: not isinstance(error, LookupError), reset_timeout=60
    )
    def lookup() -> None:
        raise errors.pop(0)

    for expected in (LookupError, TimeoutError, LookupError):
        with pytest.raises(expected):
            lookup()
    # The lookup errors counted as successes: never two failures in a row.
    assert get_breaker(name).snapshot()["consecutive_failures"] == 0
    assert get_breaker(name).state == "closed"


def test_http_errors_below_500_and_excluded_classes_never_count_whatever_the_predicate() -> None:
    name = breaker_name("never")
    errors: list[Exception] = [BadRequest(), KeyError("k"), InternalServerError()]

    @circuit_breaker(name, fail_max=1, failure=lambda error: True, exclude=(KeyError,))
    def call() -> None:
        raise errors.pop(0)

    for expected in (BadRequest, KeyError):
        with pytest.raises(expected):
            call()
    assert get_breaker(name).state == "closed"
    with pytest.raises(InternalServerError):
        call()  # a 5xx does
    assert get_breaker(name).state == "open"


def test_a_returned_value_counts_as_a_failure_when_failure_result_says_so() -> None:
    name = breaker_name("result")
    answers = [{"status": "error"}, {"status": "ok"}, {"status": "error"}, {"status": "error"}]

    @circuit_breaker(name, fail_max=2, failure_result=lambda value: value["status"] == "error")
    def fetch() -> dict[str, str]:
        return answers.pop(0)

    assert fetch() == {"status": "error"}  # returned all the same
    assert fetch() == {"status": "ok"}
    assert fetch() == {"status": "error"}
    assert get_breaker(name).state == "closed"
    assert fetch() == {"status": "error"}
    assert get_breaker(name).state == "open"
    with pytest.raises(CircuitOpen):
        fetch()


def test_a_predicate_that_raises_is_logged_and_counts_as_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = breaker_name("broken-predicate")

    def broken(value: object) -> bool:
        raise RuntimeError("predicate bug")

    guarded = circuit_breaker(name, fail_max=1, failure_result=broken)(Dependency())
    assert guarded() == "ok"
    assert get_breaker(name).state == "open"
    assert "failure predicate raised" in caplog.text


def test_each_decorated_function_judges_its_own_outcomes() -> None:
    name = breaker_name("judges")
    plain = circuit_breaker(name, fail_max=2)(Dependency(failing=True))
    lenient = circuit_breaker(name, fail_max=2, exclude=(ConnectionError,))(
        Dependency(failing=True)
    )
    with pytest.raises(ConnectionError):
        plain()
    with pytest.raises(ConnectionError):
        lenient()  # not a failure here: it resets the count
    with pytest.raises(ConnectionError):
        plain()
    assert get_breaker(name).state == "closed"
    with pytest.raises(ConnectionError):
        plain()
    assert get_breaker(name).state == "open"
    with pytest.raises(CircuitOpen):
        lenient()  # one breaker for both


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"failure_rate_threshold": 0}, ValueError),
        ({"failure_rate_threshold": 101}, ValueError),
        ({"slow_call_rate_threshold": None}, ValueError),
        ({"minimum_calls": 0}, ValueError),
        ({"window_size": 5, "minimum_calls": 6}, ValueError),
        ({"window_size": True}, ValueError),
        ({"slow_call_duration": 0}, ValueError),
        ({"slow_call_duration": float("inf")}, ValueError),
        ({"half_open_calls": 1.5}, ValueError),
        ({"failure": "yes"}, TypeError),
        ({"failure_result": 1}, TypeError),
        ({"fallback": "cached"}, TypeError),
    ],
)
def test_wrong_new_arguments_are_refused(arguments: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        circuit_breaker(breaker_name("wrong"), **arguments)


def test_same_name_definitions_must_match_on_the_breaker_settings_only() -> None:
    name = breaker_name("same")
    circuit_breaker(name, window_size=30, minimum_calls=5)
    circuit_breaker(name, window_size=30, minimum_calls=5, failure=lambda error: True)
    with pytest.raises(ValueError, match="already defined"):
        circuit_breaker(name, window_size=31, minimum_calls=5)
    with pytest.raises(ValueError, match="already defined"):
        circuit_breaker(name, window_size=30, minimum_calls=5, slow_call_duration=1.0)


def test_a_success_that_finishes_after_the_breaker_opened_does_not_open_it_again() -> None:
    name = breaker_name("late-success")
    inside, release = threading.Event(), threading.Event()
    failing = {"now": False}

    @circuit_breaker(name, failure_rate_threshold=50, minimum_calls=2, window_size=2, fail_max=1)
    def dependency() -> str:
        if failing["now"]:
            raise ConnectionError
        inside.set()
        assert release.wait(5)
        return "ok"

    slow = threading.Thread(target=dependency)
    slow.start()
    assert inside.wait(5)
    failing["now"] = True
    with pytest.raises(ConnectionError):
        dependency()  # opens it: one failure, fail_max 1
    breaker = get_breaker(name)
    opened_at = breaker.snapshot()["opened_at"]
    time.sleep(0.01)
    release.set()  # the slow call ends: the window would hold 2 calls, 50 % failed
    slow.join()
    assert breaker.snapshot()["opened_at"] == opened_at  # its open period goes on
