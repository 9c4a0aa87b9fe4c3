"""The counters of what the extension did, each from a real event of its kind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_resilience import Resilience, bulkhead, circuit_breaker, retry_on_failure
from tests.health.apps import HEALTH_CONFIG, scrape
from tests.support.servers import free_port


def test_a_refused_request_counts_once_by_what_refused_it(make_app: Callable[..., Flask]) -> None:
    app = make_app(
        RATELIMIT_APPLICATION="2 per minute",
        RESILIENCE_MAX_QUEUE_TIME=1.0,
        RESILIENCE_MONITOR_ENABLED=False,
        **HEALTH_CONFIG,
    )

    @app.get("/")
    def index() -> str:
        return "ok"

    Resilience(app)
    client = app.test_client()
    statuses = [client.get("/").status_code for _ in range(3)]
    queued = client.get("/", headers={"X-Request-Start": f"t={time.time() - 30:.3f}"})
    values = scrape(client)
    assert statuses == [200, 200, 429]
    assert queued.status_code == 503
    assert values[("resilience_rate_limited_total", ())] == 1
    assert values[("resilience_requests_shed_total", ())] == 1
    assert not any(name == "resilience_deadline_exceeded_total" for name, _ in values)


def test_limiter_storage_down_counts_the_requests_it_let_through(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(
        RATELIMIT_APPLICATION="100 per minute",
        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0",
        RESILIENCE_MONITOR_ENABLED=False,
        **HEALTH_CONFIG,
    )

    @app.get("/")
    def index() -> str:
        return "ok"

    Resilience(app)
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(2)] == [200, 200]  # fail open
    storage = ("resilience_dependency_unavailable_total", (("dependency", "limiter storage"),))
    assert scrape(client)[storage] >= 1


def test_a_full_bulkhead_and_an_opening_breaker(make_app: Callable[..., Flask]) -> None:
    app = make_app(RESILIENCE_MONITOR_ENABLED=False, **HEALTH_CONFIG)
    entered, release = threading.Event(), threading.Event()

    @app.get("/report")
    @bulkhead(1, name="metrics-reports")
    def report() -> str:
        entered.set()
        release.wait(10)
        return "done"

    @app.get("/pay")
    @circuit_breaker("metrics-payments", fail_max=2, reset_timeout=60)
    def pay() -> str:
        raise ConnectionError("payments down")

    Resilience(app)
    first = threading.Thread(target=lambda: app.test_client().get("/report"))
    first.start()
    try:
        assert entered.wait(10)
        client = app.test_client()
        assert client.get("/report").status_code == 503
        in_use = scrape(client)[("resilience_bulkhead_in_use", (("name", "metrics-reports"),))]
    finally:
        release.set()
        first.join(10)
    assert in_use == 1
    assert [client.get("/pay").status_code for _ in range(3)] == [500, 500, 503]
    values = scrape(client)
    assert values[("resilience_bulkhead_rejected_total", (("name", "metrics-reports"),))] == 1
    opened = (("name", "metrics-payments"), ("to", "open"))
    assert values[("resilience_circuit_breaker_transitions_total", opened)] == 1
    refused = ("resilience_dependency_unavailable_total", (("dependency", "breaker"),))
    assert values[refused] == 1
    assert (
        values[
            ("resilience_circuit_breaker_state", (("name", "metrics-payments"), ("state", "open")))
        ]
        == 1
    )


def test_a_database_down_and_a_statement_past_the_deadline(
    make_app: Callable[..., Flask], postgres_url: str
) -> None:
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    app = make_app(
        SQLALCHEMY_DATABASE_URI=postgres_url,
        SQLALCHEMY_BINDS={"down": down},
        RESILIENCE_REQUEST_TIMEOUT=0.5,
        RESILIENCE_MONITOR_ENABLED=False,
        RESILIENCE_VALIDATE_ON_STARTUP=False,
        **HEALTH_CONFIG,
    )
    db = SQLAlchemy(app)

    @app.get("/slow")
    def slow() -> str:
        db.session.execute(sa.text("SELECT pg_sleep(5)"))
        return "never"

    @app.get("/down")
    def read_down() -> str:
        with db.engines["down"].connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return "never"

    Resilience(app, db=db)
    client = app.test_client()
    assert client.get("/slow").status_code == 504
    assert client.get("/down").status_code == 503
    values = scrape(client)
    assert values[("resilience_deadline_exceeded_total", (("where", "database"),))] == 1
    database = ("resilience_dependency_unavailable_total", (("dependency", "database"),))
    assert values[database] == 1


def test_retries_and_the_retries_a_budget_refused(make_app: Callable[..., Flask]) -> None:
    app = make_app(
        RESILIENCE_RETRY_BUDGET=0,
        RESILIENCE_RETRY_BUDGET_FLOOR=0.2,  # two retries in the 10 s window, then none
        RESILIENCE_MONITOR_ENABLED=False,
        **HEALTH_CONFIG,
    )
    failures = iter([ConnectionError("reset")] * 3)

    @retry_on_failure(max_retries=5, delay=0.001, name="metrics-search")
    def search() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "found"

    @app.get("/search")
    def view() -> str:
        return search()

    Resilience(app)
    client = app.test_client()
    assert client.get("/search").status_code == 500  # the third failure had no retry left
    values = scrape(client)
    assert values[("resilience_retries_total", (("name", "metrics-search"),))] == 2
    exhausted = ("resilience_retry_budget_exhausted_total", (("name", "metrics-search"),))
    assert values[exhausted] == 1
