"""Retry budgets: under a burst of failures, retries stay a share of the calls."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import PIPE, Popen
from typing import cast

import pytest
import redis as redis_lib
import requests
from flask import Flask

from flask_resilience import Resilience, retry_on_failure
from flask_resilience.retry.budget import _RETRY_REDIS_AFTER
from tests.breakers.helpers import unique
from tests.outbound.upstream import UpstreamServer
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SPENT = "retry budget of"


def failing_fetch(upstream: UpstreamServer, name: str, max_retries: int = 3) -> Callable[[], None]:
    @retry_on_failure(max_retries=max_retries, delay=0, name=name)
    def fetch() -> None:
        requests.get(f"{upstream.url}/fail", timeout=5).raise_for_status()

    return fetch


def burst(app: Flask, fetch: Callable[[], None], calls: int) -> None:
    with app.app_context():
        for _ in range(calls):
            with pytest.raises(requests.HTTPError):
                fetch()


def budget_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if SPENT in record.getMessage()]


def test_a_burst_of_failures_retries_a_fifth_of_its_calls(
    make_app: Callable[..., Flask], upstream: UpstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(RESILIENCE_RETRY_BUDGET=0.2, RESILIENCE_RETRY_BUDGET_FLOOR=0)
    Resilience(app)
    caplog.set_level(logging.WARNING)

    burst(app, failing_fetch(upstream, unique("budget")), 50)

    assert upstream.hits("/fail") == 50 + 10  # without a budget: 50 * 4
    [warning] = budget_warnings(caplog)  # once for the whole streak
    assert "is spent" in warning.getMessage()


def test_the_floor_lets_a_quiet_service_retry(
    make_app: Callable[..., Flask], upstream: UpstreamServer
) -> None:
    app = make_app(RESILIENCE_RETRY_BUDGET=0.2, RESILIENCE_RETRY_BUDGET_FLOOR=0.5)
    Resilience(app)

    burst(app, failing_fetch(upstream, unique("budget"), max_retries=1), 3)

    assert upstream.hits("/fail") == 3 + 3  # 0.2 * 3 is no whole retry; the floor gives 5


def test_names_have_budgets_of_their_own_and_none_turns_them_off(
    make_app: Callable[..., Flask], upstream: UpstreamServer
) -> None:
    app = make_app(RESILIENCE_RETRY_BUDGET=0, RESILIENCE_RETRY_BUDGET_FLOOR=0.1)
    Resilience(app)
    burst(app, failing_fetch(upstream, unique("budget")), 1)
    burst(app, failing_fetch(upstream, unique("budget")), 1)
    assert upstream.hits("/fail") == 2 * (1 + 1)  # one retry of the floor's each

    unlimited = make_app(RESILIENCE_RETRY_BUDGET=None, RESILIENCE_RETRY_BUDGET_FLOOR=0)
    Resilience(unlimited)
    burst(unlimited, failing_fetch(upstream, unique("budget")), 5)
    assert upstream.hits("/fail") == 4 + 5 * 4


def test_the_budget_counts_in_the_process_while_redis_is_unreachable(
    make_app: Callable[..., Flask], upstream: UpstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(
        RESILIENCE_CIRCUIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0",
        RESILIENCE_RETRY_BUDGET=0.2,
        RESILIENCE_RETRY_BUDGET_FLOOR=0,
    )
    Resilience(app)
    caplog.set_level(logging.WARNING)

    started = time.monotonic()
    burst(app, failing_fetch(upstream, unique("budget")), 50)
    elapsed = time.monotonic() - started

    assert upstream.hits("/fail") == 60
    # Redis is tried again only after a pause that doubles each time, however many
    # calls came in between: one warning per pause that the burst outlasted.
    pauses = [
        cast("tuple[str, Exception, float]", r.args)[2]
        for r in caplog.records
        if "is unreachable" in r.getMessage()
    ]
    assert pauses == [_RETRY_REDIS_AFTER[0] * 2**n for n in range(len(pauses))]
    assert sum(pauses[:-1]) <= elapsed


# --- shared through Redis by two processes --------------------------------------


def start_worker(redis_url: str, upstream: UpstreamServer, role: str, calls: int) -> Popen[str]:
    """A worker process, imported and set up, waiting to be told to call."""
    arguments = [redis_url, upstream.url, role, str(calls)]
    process = Popen(
        [sys.executable, "-m", "tests.breakers.budget_worker", *arguments],
        cwd=ROOT,
        stdin=PIPE,
        stdout=PIPE,
        stderr=PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n", process.communicate(timeout=60)[1]
    return process


def make_calls(process: Popen[str]) -> None:
    _, errors = process.communicate("go\n", timeout=60)
    assert process.returncode == 0, errors


@pytest.mark.redis
def test_two_processes_share_one_budget_through_redis(
    redis_url: str, upstream: UpstreamServer
) -> None:
    # Both started first: their calls then fall in one 10 s window of the budget
    # however slowly a loaded machine starts a Python process.
    started: list[Popen[str]] = []
    try:
        started.append(start_worker(redis_url, upstream, "succeed", 50))
        started.append(start_worker(redis_url, upstream, "fail", 20))
        succeeding, failing = started
        # The first process only succeeds: its 50 calls give the shared budget room...
        make_calls(succeeding)
        # ...that the second, whose 20 calls all fail, retries with: 0.2 * (50 + 20)
        # = 14 retries, where its own calls alone would allow 4.
        make_calls(failing)
    finally:  # a worker that failed to start is not left waiting on its input
        for process in started:
            process.kill()
            process.wait()

    assert upstream.hits("/ok") == 50 + 1  # the last one, alone in its second, stays local
    assert upstream.hits("/fail") == 20 + 14
    client = redis_lib.Redis.from_url(redis_url)
    try:
        keys = client.keys("flask_resilience:retry_budget:{shared-upstream}:*")
        counts = [client.hgetall(key) for key in keys]
    finally:
        client.close()
    assert sum(int(c.get(b"calls", 0)) for c in counts) == 70
    assert sum(int(c.get(b"retries", 0)) for c in counts) == 14
