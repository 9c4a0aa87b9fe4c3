"""@graceful_degradation: fallback values and stale-if-error."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable

import pytest

from flask_resilience import graceful_degradation
from tests.breakers.helpers import Flaky


def test_a_failure_is_logged_and_answered_with_the_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    # The fallback need not be of the dependency's type: the caller gets either.
    recommend: Callable[[], object] = graceful_degradation(fallback_value=[])(Flaky())
    assert recommend() == []
    assert "fallback value" in caplog.text
    assert "dependency down" in caplog.text


def test_the_last_good_result_is_served_while_young_enough() -> None:
    flaky = Flaky()
    flaky.failing = False
    weather = graceful_degradation(fallback_value="n/a", serve_stale=0.2)(flaky)
    assert weather("sunny") == "sunny"

    flaky.failing = True
    assert weather("sunny") == "sunny"  # stale, within 0.2 s
    assert weather("rainy") == "n/a"  # other arguments: nothing to serve
    time.sleep(0.25)
    assert weather("sunny") == "n/a"  # too old


def test_without_serve_stale_nothing_is_remembered() -> None:
    flaky = Flaky()
    flaky.failing = False
    plain = graceful_degradation(fallback_value="n/a")(flaky)
    assert plain("x") == "x"
    flaky.failing = True
    assert plain("x") == "n/a"


def test_the_stale_cache_is_bounded_least_recently_used_first_out() -> None:
    flaky = Flaky()
    flaky.failing = False
    lookup = graceful_degradation(fallback_value=None, serve_stale=60, max_entries=2)(flaky)
    for value in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" comes
        lookup(value)
    flaky.failing = True
    assert [lookup(value) for value in ("a", "b", "c")] == ["a", None, "c"]


def test_keyword_arguments_are_part_of_the_key_and_unhashable_calls_are_not_kept() -> None:
    results = iter([1, 2, 3])
    failing = {"now": False}

    @graceful_degradation(fallback_value=0, serve_stale=60)
    def compute(*args: object, **kwargs: object) -> int:
        if failing["now"]:
            raise TimeoutError
        return next(results)

    assert compute(1, scale=2) == 1
    assert compute(1, scale=3) == 2
    assert compute([1]) == 3
    failing["now"] = True
    assert compute(1, scale=2) == 1
    assert compute(1, scale=3) == 2
    assert compute([1]) == 0


def test_other_exceptions_and_base_exceptions_propagate() -> None:
    errors: list[BaseException] = [KeyError("k"), KeyboardInterrupt(), ConnectionError()]

    @graceful_degradation(fallback_value="fallback", exceptions=(ConnectionError,))
    def dependency() -> str:
        raise errors.pop(0)

    with pytest.raises(KeyError):
        dependency()
    with pytest.raises(KeyboardInterrupt):
        dependency()
    assert dependency() == "fallback"


def test_coroutine_functions_degrade_too() -> None:
    flaky = Flaky()
    flaky.failing = False

    @graceful_degradation(fallback_value="n/a", serve_stale=60)
    async def fetch(value: str) -> str:
        await asyncio.sleep(0)
        return flaky(value)

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch("fresh")) == "fresh"
    flaky.failing = True
    assert asyncio.run(fetch("fresh")) == "fresh"
    assert asyncio.run(fetch("other")) == "n/a"


def test_concurrent_callers_share_the_cache_safely() -> None:
    @graceful_degradation(fallback_value=-1, serve_stale=60, max_entries=50)
    def square(number: int) -> int:
        return number * number

    def hammer(offset: int) -> None:
        for number in range(200):
            assert square((number + offset) % 100) == ((number + offset) % 100) ** 2

    threads = [threading.Thread(target=hammer, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"serve_stale": -1}, ValueError),
        ({"serve_stale": True}, ValueError),
        ({"max_entries": 0}, ValueError),
        ({"exceptions": (SystemExit,)}, TypeError),
    ],
)
def test_wrong_arguments_are_refused(arguments: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        graceful_degradation(**arguments)  # type: ignore[arg-type]
