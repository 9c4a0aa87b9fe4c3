"""Every health answer, passing and failing, against a schema of the IETF health check draft."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask import Flask

from flask_resilience import Resilience
from flask_resilience.health import HealthResult
from tests.health.apps import PASSWORD, TOKEN, create_app
from tests.health.schema import validate

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make(tmp_path: Path, *, failing: bool) -> Flask:
    app = create_app(
        instance_path=str(tmp_path / "instance"),
        RESILIENCE_MONITOR_ENABLED=False,
        RESILIENCE_HEALTH_GROUPS={"core": ["orders:responseTime", "memory:utilization"]},
        RESILIENCE_HEALTH_VERSION=None,
    )
    resilience: Resilience = app.extensions["test_resilience"]

    @resilience.health_check(
        "orders:responseTime", critical=True, component_type="datastore", component_id="primary"
    )
    def orders() -> HealthResult:
        if failing:
            raise ConnectionError(f"cannot reach postgresql://app:{PASSWORD}@10.0.0.7/orders")
        return HealthResult("pass", observed_value=1.5, observed_unit="ms", output="fine")

    @resilience.health_check("queue:depth")
    def queue() -> HealthResult:
        return HealthResult("warn" if failing else "pass", 12, "jobs", output="growing")

    return app


def body_of(response: Any) -> dict[str, Any]:
    assert response.mimetype == "application/health+json"
    data: dict[str, Any] = json.loads(response.data)
    return data


ENDPOINTS = ["/health", "/health/ready", "/health/startup", "/health/group/core", "/health/live"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_public_answers_pass_the_schema_when_healthy(tmp_path: Path, path: str) -> None:
    client = make(tmp_path, failing=False).test_client()
    response = client.get(path)
    data = body_of(response)
    validate(data)
    assert (response.status_code, data["status"]) == (200, "pass")


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/health/group/core"])
def test_public_answers_pass_the_schema_when_failing(tmp_path: Path, path: str) -> None:
    client = make(tmp_path, failing=True).test_client()
    response = client.get(path)
    data = body_of(response)
    validate(data)
    assert (response.status_code, data["status"]) == (503, "fail")
    entry = data["checks"]["orders:responseTime"][0]
    assert entry["componentType"] == "datastore"
    assert entry["componentId"] == "primary"
    assert "orders:responseTime (datastore)" in data["output"]
    assert PASSWORD.encode() not in response.data
    assert b"10.0.0.7" not in response.data
    assert b"raised" not in response.data  # the check's own output stays private


def test_availability_failures_pass_the_schema(tmp_path: Path) -> None:
    app = make(tmp_path, failing=False)
    resilience: Resilience = app.extensions["test_resilience"]
    client = app.test_client()
    resilience.refuse_traffic("warming the cache", app=app)
    resilience.mark_broken("the worker pool died", app=app)
    for path in ("/health/ready", "/health/live", "/health/startup"):
        response = client.get(path)
        assert response.status_code == 503, path
        validate(body_of(response))
    app.extensions["resilience"].draining.set()
    validate(body_of(client.get("/health/ready")))


@pytest.mark.parametrize("failing", [False, True])
def test_detailed_passes_the_schema_with_outputs_on_failures_only(
    tmp_path: Path, failing: bool
) -> None:
    app = make(tmp_path, failing=failing)
    client = app.test_client()
    client.get("/")
    health = app.extensions["resilience"]
    from flask_resilience.health import HealthState

    monitor = health.get(HealthState).monitor
    for _ in range(3):
        monitor.observe(monitor.collect())  # samples, with their times, in the history
    monitor.thresholds.limits["memory_usage"] = 0.0001  # an alert, with its time, too
    monitor.observe(monitor.collect())
    data = body_of(client.get("/health/detailed?history=10", headers=AUTH))
    validate(data, public=False)
    assert "version" not in data
    assert len(data["monitor"]["history"]) == 4
    assert "memory_usage" in [alert["metric"] for alert in data["monitor"]["recent_alerts"]]
    assert "db_connections" not in data["monitor"]["history"][0]  # no pool: absent, not null
    orders = data["checks"]["orders:responseTime"][0]
    queue = data["checks"]["queue:depth"][0]
    if failing:
        assert orders["output"] == "the check raised ConnectionError"
        assert queue["output"] == "growing"
    else:
        assert "output" not in orders
        assert "output" not in queue


@pytest.mark.parametrize(
    "wrong",
    [
        {"status": "pass", "checks": {"a:b": [{"status": "pass", "time": None}]}},
        {"status": "pass", "time": 1700000000.5},
        {"status": "pass", "output": "nothing to say"},
        {"status": "ok"},
        {"status": "pass", "checks": {"a:b:c": [{"status": "pass"}]}},
        {"status": "pass", "checks": {"a:b": [{"status": "pass", "observedValue": 3}]}},
        {"status": "pass", "checks": {"a:b": [{"status": "pass", "time": "yesterday"}]}},
        {"status": "pass", "checks": {"a:b": [{"status": "pass", "time": "2026-01-01T00:00Z"}]}},
        {"status": "pass", "checks": {"a:b": []}},
        {"status": "pass", "monitor": {"history": [{"time": 1700000000.5}]}},
    ],
)
def test_the_schema_refuses_what_the_answers_must_not_be(wrong: dict[str, Any]) -> None:
    with pytest.raises((jsonschema.ValidationError, AssertionError)):
        validate(wrong, public=False)


def test_the_public_schema_refuses_a_check_output() -> None:
    failing = {"status": "fail", "componentType": "datastore", "time": "2026-01-01T00:00:00Z"}
    validate({"status": "fail", "checks": {"db": [failing]}})
    with pytest.raises(jsonschema.ValidationError):
        validate({"status": "fail", "checks": {"db": [{**failing, "output": "refused"}]}})
