"""Each check says what it is (componentType, componentId) and the answers hide what it said."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_resilience import Resilience
from flask_resilience.health import HealthResult
from tests.health.apps import PASSWORD, TOKEN, create_app
from tests.health.schema import validate

AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = re.compile(r"^[A-Za-z0-9_.-]+:[A-Za-z]+$")


def body(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


@pytest.fixture
def db_app(tmp_path: Path) -> Iterator[Flask]:
    db = SQLAlchemy()
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'main.db'}",
        SQLALCHEMY_BINDS={"reports": f"sqlite:///{tmp_path / 'reports.db'}"},
        UPLOAD_FOLDER=str(tmp_path),
        RESILIENCE_HEALTH_TOKEN=TOKEN,
        RESILIENCE_MONITOR_ENABLED=False,
    )
    db.init_app(app)
    Resilience(app, db=db)
    yield app
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_every_built_in_check_names_its_component(db_app: Flask) -> None:
    data = body(db_app.test_client().get("/health"))
    validate(data)
    kinds = {
        name: (entry[0]["componentType"], entry[0].get("componentId"))
        for name, entry in data["checks"].items()
    }
    assert kinds == {
        "database:responseTime": ("datastore", "default"),
        "database.reports:responseTime": ("datastore", "reports"),
        "disk:utilization": ("system", "instance"),
        "disk.uploads:utilization": ("system", "uploads"),
        "memory:utilization": ("system", None),
        "ratelimit:storage": ("datastore", None),
    }
    assert all(KEY.match(name) for name in data["checks"])  # component:measurement


def test_the_rate_limit_storage_is_a_datastore_that_only_warns(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    check = app.extensions["resilience"].health_checks["ratelimit:storage"]
    assert (check.critical, check.component_type) == (False, "datastore")
    assert "rate_limit_storage" not in body(app.test_client().get("/health"))["checks"]


def test_a_registered_check_gives_its_own_type_and_id(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    resilience: Resilience = app.extensions["test_resilience"]
    resilience.health_check("search:responseTime", component_type="datastore", component_id="eu")(
        lambda: HealthResult("pass", 3.2, "ms")
    )
    resilience.health_check("mailer")(lambda: True)
    checks = body(app.test_client().get("/health"))["checks"]
    assert checks["search:responseTime"][0] == {
        "status": "pass",
        "componentType": "datastore",
        "componentId": "eu",
        "observedValue": 3.2,
        "observedUnit": "ms",
        "time": checks["search:responseTime"][0]["time"],
    }
    assert checks["mailer"][0]["componentType"] == "component"
    assert "componentId" not in checks["mailer"][0]


@pytest.mark.parametrize("name", ["", "a:b:c", ":b", "a:", "db::time"])
def test_a_check_name_is_component_and_measurement(name: str) -> None:
    with pytest.raises(ValueError, match="component:measurement"):
        Resilience().health_check(name)


@pytest.mark.parametrize("component_type", ["", None, 3])
def test_a_component_type_is_a_word(component_type: Any) -> None:
    with pytest.raises(ValueError, match="component_type"):
        Resilience().health_check("x", component_type=component_type)


def test_a_failure_names_the_component_on_the_public_answer_and_nothing_else(
    tmp_path: Path,
) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    resilience: Resilience = app.extensions["test_resilience"]

    @resilience.health_check("ledger:responseTime", critical=True, component_type="datastore")
    def ledger() -> HealthResult:
        return HealthResult("fail", output=f"no route to postgresql://u:{PASSWORD}@10.1.2.3:5432")

    @resilience.health_check("cache:hitRatio")
    def cache() -> HealthResult:
        return HealthResult("warn", 0.2, "ratio", output="cold, at 10.1.2.4")

    client = app.test_client()
    response = client.get("/health")
    assert response.status_code == 503
    data = body(response)
    validate(data)
    assert data["output"] == (
        "failing: ledger:responseTime (datastore); warning: cache:hitRatio (component)"
    )
    assert data["checks"]["ledger:responseTime"][0]["status"] == "fail"
    for secret in (PASSWORD.encode(), b"10.1.2.3", b"10.1.2.4", b"postgresql", b"cold"):
        assert secret not in response.data
        assert secret not in client.get("/health/ready").data
    detailed = body(client.get("/health/detailed", headers=AUTH))
    # The output is for the operators: scrubbed of the password, kept in detailed health.
    assert detailed["checks"]["ledger:responseTime"][0]["output"] == (
        "no route to postgresql://u:***@10.1.2.3:5432"
    )


def test_a_warning_is_named_too_and_a_pass_says_nothing(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    client = app.test_client()
    assert "output" not in body(client.get("/health"))
    app.extensions["test_resilience"].health_check("optional")(lambda: False)
    data = body(client.get("/health"))
    assert (data["status"], data["output"]) == ("warn", "failing: optional (component)")


def test_detailed_has_no_null_and_iso_times(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    state = app.extensions["resilience"]
    state.detail_providers["circuit_breakers"] = lambda: {
        "payments": {"state": "open", "opened_at": 1767225600.25, "fail_counter": None}
    }
    data = body(app.test_client().get("/health/detailed", headers=AUTH))
    validate(data, public=False)
    assert data["circuit_breakers"]["payments"] == {
        "state": "open",
        "opened_at": "2026-01-01T00:00:00.250Z",
    }
    assert data["time"].endswith("Z")
    assert "version" not in data
    assert "latency_p95" not in data["requests"]["windows"]["60s"]  # no request yet
