"""@bulkhead: a per-process cap on concurrent calls."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flask import request

from flask_resilience import BulkheadFull, bulkhead
from flask_resilience.bulkheads import bulkhead_states
from tests.breakers.helpers import resilient_app, unique


class Gate:
    """Keeps callers inside the guarded function until opened."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.inside = threading.Semaphore(0)

    def __call__(self) -> str:
        self.inside.release()
        assert self.opened.wait(5)
        return "done"


@contextmanager
def occupied(func: Callable[[], object], callers: int, gate: Gate) -> Iterator[None]:
    """Run ``callers`` threads into ``func`` and keep them there for the block."""
    threads = [threading.Thread(target=func) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert gate.inside.acquire(timeout=5)
    try:
        yield
    finally:
        gate.opened.set()
        for thread in threads:
            thread.join()


def test_calls_over_the_cap_are_refused_and_slots_come_back() -> None:
    gate = Gate()
    name = unique("cap")
    guarded = bulkhead(2, name=name)(gate)
    with occupied(guarded, 2, gate), pytest.raises(BulkheadFull) as refused:
        guarded()
    assert refused.value.code == 503
    assert refused.value.bulkhead == name
    assert guarded() == "done"


def test_a_call_waits_up_to_max_wait_for_a_slot() -> None:
    gate = Gate()
    guarded = bulkhead(1, max_wait=2)(gate)
    with occupied(guarded, 1, gate):
        threading.Timer(0.1, gate.opened.set).start()
        started = time.monotonic()
        assert guarded() == "done"
        assert time.monotonic() - started >= 0.05

    short = Gate()
    impatient = bulkhead(1, max_wait=0.1)(short)
    with occupied(impatient, 1, short), pytest.raises(BulkheadFull):
        impatient()


def test_slots_are_released_when_the_call_raises() -> None:
    outcomes: list[BaseException] = [ValueError(), KeyboardInterrupt()]

    @bulkhead(1)
    def failing() -> None:
        raise outcomes.pop(0)

    with pytest.raises(ValueError):
        failing()
    with pytest.raises(KeyboardInterrupt):
        failing()
    with pytest.raises(IndexError):  # admitted: the slot came back both times
        failing()


def test_a_full_bulkhead_answers_503_with_retry_after_in_a_view() -> None:
    app = resilient_app(RESILIENCE_BULKHEAD_MAX_CONCURRENT=1)
    gate = Gate()
    name = unique("view")

    @app.route("/api/export", methods=["GET", "OPTIONS"])
    @bulkhead(name=name)
    def export() -> str:
        return "preflight" if request.method == "OPTIONS" else gate()

    client = app.test_client()
    with occupied(lambda: app.test_client().get("/api/export"), 1, gate):
        response = client.get("/api/export")
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        assert response.headers.getlist("Retry-After") == ["1"]
        assert response.get_json()["detail"].startswith("The server is busy")
        assert name not in response.get_data(as_text=True)
        with app.app_context():
            assert bulkhead_states()[name] == {
                "max_concurrent": 1,
                "max_wait": 0,
                "in_use": 1,
                "rejected": 1,
            }
        assert client.options("/api/export").data == b"preflight"  # passes a full bulkhead


def test_the_default_cap_outside_an_app_is_the_built_in_one() -> None:
    gate = Gate()
    guarded = bulkhead()(gate)
    with occupied(guarded, 10, gate), pytest.raises(BulkheadFull):
        guarded()


def test_coroutine_functions_share_the_cap_and_wait_without_blocking() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        @bulkhead(2, max_wait=0.05)
        async def fetch() -> str:
            await release.wait()
            return "done"

        holders = [asyncio.create_task(fetch()) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(BulkheadFull):
            await fetch()
        asyncio.get_running_loop().call_later(0.02, release.set)
        waiting = bulkhead(1, max_wait=1, name=unique("async-wait"))(fetch)
        assert await waiting() == "done"
        assert await asyncio.gather(*holders) == ["done", "done"]

    asyncio.run(scenario())


def test_async_views_are_capped() -> None:
    app = resilient_app()

    @app.route("/slow", methods=["GET", "OPTIONS"])
    @bulkhead(1)
    async def slow() -> str:
        await asyncio.sleep(0)
        return "slow"

    client = app.test_client()
    assert client.get("/slow").data == b"slow"
    assert client.options("/slow").status_code == 200


def test_names_are_unique_per_settings_and_arguments_are_checked() -> None:
    name = unique("named")
    bulkhead(3, name=name)(lambda: None)
    bulkhead(3, name=name)(lambda: None)  # same settings: shared slots
    with pytest.raises(ValueError, match="already defined"):
        bulkhead(4, name=name)(lambda: None)
    for wrong in ({"max_concurrent": 0}, {"max_concurrent": True}, {"max_wait": -1}):
        with pytest.raises(ValueError):
            bulkhead(**wrong)
