"""RESILIENCE_HEALTH_GROUPS: named sets of checks, each served at /health/group/<name>."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_resilience import ConfigurationError, Resilience
from tests.health.apps import TOKEN, create_app
from tests.health.schema import validate

AUTH = {"Authorization": f"Bearer {TOKEN}"}
GROUPS = {
    "db": ["orders:responseTime"],
    "edge": ["orders:responseTime", "cdn:reachability", "memory:utilization"],
}


def grouped(tmp_path: Path, **config: Any) -> tuple[Flask, dict[str, bool]]:
    app = create_app(
        instance_path=str(tmp_path),
        RESILIENCE_MONITOR_ENABLED=False,
        RESILIENCE_HEALTH_CACHE_TTL=0,
        RESILIENCE_HEALTH_CACHE_TTL_FAILED=0,
        **{"RESILIENCE_HEALTH_GROUPS": GROUPS, **config},
    )
    up = {"orders": True, "cdn": True}
    resilience: Resilience = app.extensions["test_resilience"]
    # Registered after init_app, as apps often do: the groups accept them.
    resilience.health_check("orders:responseTime", critical=True, component_type="datastore")(
        lambda: up["orders"]
    )
    resilience.health_check("cdn:reachability")(lambda: up["cdn"])  # not critical
    return app, up


def body(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def test_a_group_answers_for_its_checks_only(tmp_path: Path) -> None:
    app, up = grouped(tmp_path)
    client = app.test_client()
    response = client.get("/health/group/db")
    assert response.status_code == 200
    assert response.mimetype == "application/health+json"
    assert response.headers["Cache-Control"] == "max-age=0"
    data = body(response)
    validate(data)
    assert set(data["checks"]) == {"orders:responseTime"}
    assert set(body(client.get("/health/group/edge"))["checks"]) == set(GROUPS["edge"])

    up["orders"] = False
    failing = client.get("/health/group/db")
    assert failing.status_code == 503
    validate(body(failing))
    assert body(failing)["output"] == "failing: orders:responseTime (datastore)"


def test_any_member_failing_fails_its_group_critical_or_not(tmp_path: Path) -> None:
    app, up = grouped(tmp_path)
    client = app.test_client()
    up["cdn"] = False
    assert client.get("/health").status_code == 200  # a non-critical failure only warns there
    response = client.get("/health/group/edge")
    assert response.status_code == 503
    assert body(response)["status"] == "fail"
    assert client.get("/health/group/db").status_code == 200


def test_an_unknown_group_is_a_404_problem(tmp_path: Path) -> None:
    app, _ = grouped(tmp_path)
    response = app.test_client().get("/health/group/nope")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    problem = body(response)
    assert problem["type"].endswith(":health-group-unknown")
    assert problem["detail"] == "There is no health group 'nope'."
    assert b"edge" not in response.data  # the groups are not listed to strangers


def test_groups_are_public_and_exempt_from_rate_limits(tmp_path: Path) -> None:
    app, _ = grouped(tmp_path, RATELIMIT_DEFAULT="1 per minute")
    client = app.test_client()
    assert [client.get("/health/group/db").status_code for _ in range(3)] == [200] * 3


def test_a_member_that_is_no_check_fails_its_group_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = grouped(tmp_path, RESILIENCE_HEALTH_GROUPS={"db": ["orders:responsetime"]})
    client = app.test_client()
    with caplog.at_level(logging.WARNING):
        client.get("/")  # the first request names it
        responses = [client.get("/health/group/db") for _ in range(3)]
    assert [r.status_code for r in responses] == [503] * 3
    data = body(responses[0])
    validate(data)
    assert data["output"] == (
        "not a registered check: orders:responsetime; failing: orders:responsetime (component)"
    )
    warned = [r for r in caplog.records if "Health group 'db'" in r.getMessage()]
    assert len(warned) == 1
    assert "'orders:responsetime', not a registered check" in warned[0].getMessage()


def test_known_members_are_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = grouped(tmp_path)
    with caplog.at_level(logging.WARNING):
        app.test_client().get("/health/group/edge")
    assert not [r for r in caplog.records if "Health group" in r.getMessage()]


def test_detailed_lists_the_groups(tmp_path: Path) -> None:
    app, _ = grouped(tmp_path)
    data = body(app.test_client().get("/health/detailed", headers=AUTH))
    assert data["groups"] == GROUPS


@pytest.mark.parametrize(
    "groups",
    [
        ["db"],
        {"db": []},
        {"db": "orders:responseTime"},
        {"db": [""]},
        {"db": [3]},
        {"": ["memory:utilization"]},
        {"a/b": ["memory:utilization"]},
        {3: ["memory:utilization"]},
    ],
)
def test_a_wrong_group_configuration_is_refused_at_init_app(groups: Any) -> None:
    app = Flask(__name__)
    app.config["RESILIENCE_HEALTH_GROUPS"] = groups
    with pytest.raises(ConfigurationError, match="RESILIENCE_HEALTH_GROUPS"):
        Resilience(app)
