"""Availability the app sets itself: refusing traffic (readiness) and broken (liveness)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response

from flask_resilience import Resilience
from tests.health.apps import PASSWORD, TOKEN, create_app
from tests.health.schema import validate

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)


def resilience(app: Flask) -> Resilience:
    extension: Resilience = app.extensions["test_resilience"]
    return extension


def body(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def test_refusing_traffic_fails_readiness_with_the_reason_until_accepting(app: Flask) -> None:
    client = app.test_client()
    with app.app_context():
        resilience(app).refuse_traffic("warming the cache")
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.headers["Cache-Control"] == "no-store"
    assert body(response) == {"status": "fail", "output": "refusing traffic: warming the cache"}
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/startup").status_code == 200
    assert client.get("/health").status_code == 200  # the checks still pass
    with app.app_context():
        resilience(app).accept_traffic()
    assert client.get("/health/ready").status_code == 200


def test_broken_fails_liveness_before_flask(app: Flask) -> None:
    hooks: list[int] = []
    app.before_request(lambda: hooks.append(1))
    client = app.test_client()
    resilience(app).mark_broken("the consumer thread died", app=app)
    response = client.get("/health/live")
    assert response.status_code == 503
    assert response.mimetype == "application/health+json"
    assert response.headers["Cache-Control"] == "no-store"
    validate(body(response))
    assert body(response) == {"status": "fail", "output": "broken: the consumer thread died"}
    head = client.head("/health/live")
    assert (head.status_code, head.data) == (503, b"")
    assert hooks == []  # answered by the WSGI layer, as a healthy liveness is
    assert client.get("/health/ready").status_code == 200  # readiness is another question
    with app.test_request_context("/health/live"):
        fallback = app.view_functions["resilience_health.live"]()
    assert isinstance(fallback, Response) and fallback.status_code == 503
    resilience(app).mark_correct(app=app)
    assert client.get("/health/live").status_code == 200
    with app.test_request_context("/health/live"):
        answered = app.view_functions["resilience_health.live"]()
    assert isinstance(answered, Response) and answered.status_code == 200


def test_the_states_show_in_detailed_health(app: Flask) -> None:
    client = app.test_client()
    assert body(client.get("/health/detailed", headers=AUTH))["availability"] == {
        "liveness": "correct",
        "readiness": "accepting",
    }
    resilience(app).refuse_traffic("maintenance", app=app)
    resilience(app).mark_broken("stuck", app=app)
    shown = body(client.get("/health/detailed", headers=AUTH))["availability"]
    assert (shown["readiness"], shown["refusing"]) == ("refusing", "maintenance")
    assert (shown["liveness"], shown["broken"]) == ("broken", "stuck")
    assert shown["refusing_since"].endswith("Z")
    assert shown["broken_since"].endswith("Z")


def test_a_reason_is_one_short_line_without_credentials(app: Flask) -> None:
    resilience(app).refuse_traffic(
        f"replica postgresql://app:{PASSWORD}@db/app\nlagging " + "x" * 300, app=app
    )
    response = app.test_client().get("/health/ready")
    assert PASSWORD.encode() not in response.data
    output = body(response)["output"]
    assert output.startswith("refusing traffic: replica postgresql://app:***@db/app lagging x")
    assert len(output) == len("refusing traffic: ") + 200


@pytest.mark.parametrize("reason", ["", "   ", None, 3])
def test_a_reason_is_required(app: Flask, reason: Any) -> None:
    with pytest.raises(ValueError, match="reason"):
        resilience(app).refuse_traffic(reason, app=app)
    with pytest.raises(ValueError, match="reason"):
        resilience(app).mark_broken(reason, app=app)


def test_the_states_change_are_logged(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        resilience(app).refuse_traffic("maintenance", app=app)
        resilience(app).accept_traffic(app=app)
        resilience(app).accept_traffic(app=app)  # already accepting: nothing to say
        resilience(app).mark_broken("stuck", app=app)
        resilience(app).mark_correct(app=app)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.endswith(".health")]
    assert said == [
        ("WARNING", "Refusing traffic: maintenance; readiness answers 503"),
        ("INFO", "Accepting traffic again"),
        ("ERROR", "Marked broken: stuck; liveness answers 503"),
        ("INFO", "No longer marked broken; liveness answers 200 again"),
    ]


def test_a_state_is_set_from_a_thread_without_an_app_context(app: Flask) -> None:
    thread = threading.Thread(
        target=resilience(app).refuse_traffic, args=("warming",), kwargs={"app": app}
    )
    thread.start()
    thread.join(5)
    assert app.test_client().get("/health/ready").status_code == 503
    with pytest.raises(RuntimeError, match="application context"):
        resilience(app).accept_traffic()


def test_without_health_there_is_no_availability(tmp_path: Path) -> None:
    off = create_app(instance_path=str(tmp_path), RESILIENCE_HEALTH_ENABLED=False)
    with pytest.raises(RuntimeError, match="RESILIENCE_HEALTH_ENABLED"):
        resilience(off).refuse_traffic("maintenance", app=off)


def test_each_app_has_its_own_state(tmp_path: Path) -> None:
    extension = Resilience()
    apps = [Flask(f"app{n}", instance_path=str(tmp_path / str(n))) for n in range(2)]
    for each in apps:
        extension.init_app(each)
    extension.refuse_traffic("maintenance", app=apps[0])
    assert [a.test_client().get("/health/ready").status_code for a in apps] == [503, 200]


# -- POST /health/availability ------------------------------------------------------------


def post(app: Flask, payload: Any, headers: dict[str, str] | None = None) -> Any:
    return app.test_client().post(
        "/health/availability", json=payload, headers=AUTH if headers is None else headers
    )


def test_the_endpoint_sets_both_states(app: Flask) -> None:
    import os

    client = app.test_client()
    answer = post(app, {"readiness": "refusing", "reason": "draining by hand"})
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    data = body(answer)
    assert data["readiness"] == "refusing"
    assert data["refusing"] == "draining by hand"
    assert (data["liveness"], data["pid"]) == ("correct", os.getpid())
    assert body(client.get("/health/ready"))["output"] == "refusing traffic: draining by hand"

    assert body(post(app, {"liveness": "broken", "reason": "wedged"}))["liveness"] == "broken"
    assert client.get("/health/live").status_code == 503
    both = body(post(app, {"readiness": "accepting", "liveness": "correct"}))
    assert (both["readiness"], both["liveness"]) == ("accepting", "correct")
    assert "refusing" not in both
    assert client.get("/health/ready").status_code == 200
    assert client.get("/health/live").status_code == 200


def test_the_endpoint_is_protected(app: Flask) -> None:
    refused = post(app, {"readiness": "refusing", "reason": "x"}, headers={})
    assert refused.status_code == 401
    assert refused.mimetype == "application/problem+json"
    assert app.test_client().get("/health/ready").status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        {},
        {"reason": "why"},
        {"readiness": "refusing"},
        {"readiness": "refusing", "reason": ""},
        {"liveness": "broken"},
        {"readiness": "closed", "reason": "why"},
        {"liveness": "dead", "reason": "why"},
        {"readiness": "accepting", "colour": "red"},
    ],
)
def test_the_endpoint_refuses_a_body_that_says_no_state(app: Flask, payload: Any) -> None:
    response = post(app, payload)
    assert response.status_code == 400
    problem = body(response)
    assert problem["type"].endswith(":health-availability-invalid")
    assert '"readiness": "accepting" | "refusing"' in problem["detail"]
    assert app.test_client().get("/health/ready").status_code == 200
    assert app.test_client().get("/health/live").status_code == 200


def test_the_endpoint_takes_json_only(app: Flask) -> None:
    # A form another site posts carries no JSON content type: it cannot set a state.
    form = app.test_client().post(
        "/health/availability",
        data={"readiness": "refusing", "reason": "x"},
        headers=AUTH,
    )
    assert form.status_code == 400
    text = app.test_client().post(
        "/health/availability",
        data='{"readiness": "refusing", "reason": "x"}',
        content_type="text/plain",
        headers=AUTH,
    )
    assert text.status_code == 400
    assert app.test_client().get("/health/ready").status_code == 200
