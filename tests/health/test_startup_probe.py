"""/health/startup: 503 until init_app and its startup checks are done, then 200 for good."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_resilience import Resilience, StartupCheckFailed
from flask_resilience.health import HealthState
from tests.health.apps import create_app
from tests.health.schema import validate
from tests.support.servers import PostgresServer, wait_until

PRODUCTION = {
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "RATELIMIT_APPLICATION": "100 per minute",
}


def body(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def test_startup_passes_once_init_app_is_done_and_says_how_long_it_took(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    hooks: list[str] = []
    app.before_request(lambda: hooks.append("app"))
    response = app.test_client().get("/health/startup")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = body(response)
    validate(data)
    entry = data["checks"]["startup:duration"][0]
    assert (entry["status"], entry["observedUnit"]) == ("pass", "s")
    assert 0 <= entry["observedValue"] < 10
    assert entry["time"] == app.extensions["resilience"].get(HealthState).started_at
    # Unlike liveness, the probe's request goes through the app: its hooks ran.
    assert hooks == ["app"]
    app.test_client().get("/health/live")
    assert hooks == ["app"]


def test_startup_does_not_follow_the_dependencies(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    app.extensions["test_resilience"].health_check("db", critical=True)(lambda: False)
    client = app.test_client()
    assert client.get("/health/ready").status_code == 503
    # A database down must not make the orchestrator restart the app: readiness says it.
    assert client.get("/health/startup").status_code == 200


def _starting(make_app: Callable[..., Flask], pg: PostgresServer, retries: int) -> Flask:
    return make_app(
        SQLALCHEMY_DATABASE_URI=pg.url,
        RESILIENCE_VALIDATE_ON_STARTUP=True,
        RESILIENCE_STARTUP_RETRIES=retries,
        RESILIENCE_MONITOR_ENABLED=False,
        **PRODUCTION,
    )


def _start_in_thread(app: Flask) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def start() -> None:
        try:
            Resilience(app)
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=start)
    thread.start()
    assert wait_until(lambda: "resilience" in app.extensions and _mounted(app), 10)
    return thread, raised


def _mounted(app: Flask) -> bool:
    return app.extensions["resilience"].find(HealthState) is not None and any(
        rule.rule == "/health/startup" for rule in app.url_map.iter_rules()
    )


@pytest.mark.postgres
def test_startup_fails_while_the_startup_checks_wait_for_the_database(
    make_app: Callable[..., Flask], pg: PostgresServer
) -> None:
    app = _starting(make_app, pg, retries=6)
    pg.stop()
    try:
        began = time.monotonic()
        thread, raised = _start_in_thread(app)
        # Mounted, and init_app now retries the database with backoff.
        starting = app.test_client().get("/health/startup")
        assert starting.status_code == 503
        data = body(starting)
        validate(data)
        assert data["output"] == "starting: init_app has not finished"
        assert data["checks"]["startup:duration"][0]["status"] == "fail"
    finally:
        pg.start()
    thread.join(60)
    assert raised == []
    response = app.test_client().get("/health/startup")
    assert response.status_code == 200
    took = body(response)["checks"]["startup:duration"][0]["observedValue"]
    assert 0.5 <= took <= time.monotonic() - began  # the first backoff at least


@pytest.mark.postgres
def test_a_start_that_fails_its_checks_never_passes_startup(
    make_app: Callable[..., Flask], pg: PostgresServer
) -> None:
    app = _starting(make_app, pg, retries=2)
    pg.stop()
    try:
        thread, raised = _start_in_thread(app)
        thread.join(30)
    finally:
        pg.start()
    assert isinstance(raised[0], StartupCheckFailed)
    assert app.test_client().get("/health/startup").status_code == 503


def test_startup_fails_while_the_app_is_marked_broken(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    resilience: Resilience = app.extensions["test_resilience"]
    client = app.test_client()
    resilience.mark_broken("the job thread died", app=app)
    response = client.get("/health/startup")
    assert response.status_code == 503
    assert body(response) == {"status": "fail", "output": "broken: the job thread died"}
    resilience.mark_correct(app=app)
    assert client.get("/health/startup").status_code == 200


def test_the_app_s_own_startup_route_wins(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    app.add_url_rule("/health/startup", "own_startup", lambda: "mine")
    assert app.test_client().get("/health/startup").data == b"mine"
