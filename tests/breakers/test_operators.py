"""What operators do: read a breaker, force it open or closed, reset it; by code and
through ``POST <health prefix>/breakers/<name>/open|close|reset``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_resilience import CircuitOpen, Resilience, circuit_breaker
from flask_resilience.circuit import get_breaker

from .circuit_helpers import Dependency, app_with, breaker_name

TOKEN = "operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_force_open_refuses_every_call_until_reset() -> None:
    name = breaker_name("forced-open")
    dependency = Dependency()
    guarded = circuit_breaker(name, reset_timeout=30)(dependency)
    breaker = get_breaker(name)

    breaker.force_open()
    assert breaker.state == "forced-open"
    with pytest.raises(CircuitOpen) as refused:
        guarded()
    assert (refused.value.state, refused.value.retry_after) == ("forced-open", 30)
    assert dependency.calls == 0

    breaker.reset()
    assert breaker.state == "closed"
    assert guarded() == "ok"


def test_force_closed_lets_every_call_through_and_records_nothing() -> None:
    name = breaker_name("forced-closed")
    dependency = Dependency(failing=True)
    guarded = circuit_breaker(name, fail_max=1)(dependency)
    breaker = get_breaker(name)
    breaker.force_closed()
    for _ in range(5):
        with pytest.raises(ConnectionError):
            guarded()
    snapshot = breaker.snapshot()
    assert (snapshot["state"], snapshot["calls"], snapshot["consecutive_failures"]) == (
        "forced-closed",
        0,
        0,
    )
    breaker.reset()
    with pytest.raises(ConnectionError):
        guarded()
    assert breaker.state == "open"  # recorded again once released


def test_reset_closes_an_open_breaker_with_an_empty_window() -> None:
    name = breaker_name("reset")
    dependency = Dependency(failing=True)
    guarded = circuit_breaker(name, fail_max=2, reset_timeout=60)(dependency)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            guarded()
    breaker = get_breaker(name)
    assert breaker.state == "open"
    breaker.reset()
    snapshot = breaker.snapshot()
    assert (snapshot["state"], snapshot["calls"], snapshot["opened_at"]) == ("closed", 0, None)
    with pytest.raises(ConnectionError):
        guarded()
    assert breaker.state == "closed"  # one failure of the new window: not two in a row


def test_a_fallback_answers_while_forced_open() -> None:
    name = breaker_name("forced-fallback")
    guarded = circuit_breaker(name, fallback=lambda value="ok": f"cached {value}")(Dependency())
    get_breaker(name).force_open()
    assert guarded("quote") == "cached quote"


def test_memory_storage_forces_the_breaker_of_one_app_only() -> None:
    first, second = app_with(), app_with()
    name = breaker_name("per-app")
    guarded = circuit_breaker(name)(Dependency())
    resilience = Resilience()
    with first.app_context():
        resilience.breaker(name).force_open()
        with pytest.raises(CircuitOpen):
            guarded()
    with second.app_context():
        assert resilience.breaker(name).state == "closed"
        assert guarded() == "ok"
    assert get_breaker(name).state == "closed"  # outside any app: this process's own


def test_an_unknown_breaker_is_a_lookup_error() -> None:
    with app_with().app_context(), pytest.raises(LookupError):
        Resilience().breaker(breaker_name("never-defined"))


# --- the endpoint -------------------------------------------------------------------


@pytest.fixture
def resilience() -> Resilience:
    return Resilience()


@pytest.fixture
def app(tmp_path: Path, resilience: Resilience) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(RESILIENCE_HEALTH_TOKEN=TOKEN, RESILIENCE_MONITOR_ENABLED=False)
    resilience.init_app(app)
    return app


def body(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.get_data(as_text=True))
    return data


def test_post_forces_a_breaker_open_shows_it_in_detailed_health_and_releases_it(
    app: Flask,
) -> None:
    name = breaker_name("payments")
    guarded = circuit_breaker(name, reset_timeout=45)(Dependency())

    @app.get("/pay")
    def pay() -> str:
        return guarded()

    client = app.test_client()
    assert client.get("/pay").status_code == 200

    response = client.post(f"/health/breakers/{name}/open", headers=AUTH)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert body(response)["name"] == name
    assert body(response)["state"] == "forced-open"
    assert body(response)["storage"] == "memory"
    refused = client.get("/pay")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "45"
    detailed = body(client.get("/health/detailed", headers=AUTH))
    assert detailed["circuit_breakers"][name]["state"] == "forced-open"

    assert body(client.post(f"/health/breakers/{name}/close", headers=AUTH))["state"] == (
        "forced-closed"
    )
    assert client.get("/pay").status_code == 200
    assert body(client.post(f"/health/breakers/{name}/reset", headers=AUTH))["state"] == "closed"
    detailed = body(client.get("/health/detailed", headers=AUTH))
    assert detailed["circuit_breakers"][name]["state"] == "closed"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": TOKEN}, 401)],
)
def test_post_refuses_without_the_token(app: Flask, headers: dict[str, str], status: int) -> None:
    name = breaker_name("guarded-switch")
    circuit_breaker(name)
    client = app.test_client()
    response = client.post(f"/health/breakers/{name}/open", headers=headers)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    with app.app_context():
        assert get_breaker(name).state == "closed"


def test_post_is_closed_without_a_token_configured_outside_debug(tmp_path: Path) -> None:
    app = app_with(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    name = breaker_name("no-token")
    circuit_breaker(name)
    response = app.test_client().post(f"/health/breakers/{name}/open")
    assert response.status_code == 403
    with app.app_context():
        assert get_breaker(name).state == "closed"


def test_post_opens_to_the_health_permission(app: Flask, resilience: Resilience) -> None:
    name = breaker_name("permission")
    circuit_breaker(name)
    grants = {"ops": {"resilience:health"}, "guest": {"reports:read"}}

    @resilience.current_user_loader
    def load_user() -> str | None:
        return request.headers.get("X-User")

    @resilience.permission_loader
    def load_permissions(user: str) -> set[str]:
        return grants[user]

    client = app.test_client()
    guest = client.post(f"/health/breakers/{name}/open", headers={"X-User": "guest"})
    assert guest.status_code == 401
    with app.app_context():
        assert get_breaker(name).state == "closed"
    response = client.post(f"/health/breakers/{name}/open", headers={"X-User": "ops"})
    assert response.status_code == 200
    assert body(response)["state"] == "forced-open"


def test_post_answers_404_for_an_unknown_breaker_or_action_and_405_for_get(app: Flask) -> None:
    name = breaker_name("known")
    circuit_breaker(name)
    client = app.test_client()
    unknown = client.post(f"/health/breakers/{breaker_name('unknown')}/open", headers=AUTH)
    assert unknown.status_code == 404
    assert unknown.mimetype == "application/problem+json"
    assert client.post(f"/health/breakers/{name}/explode", headers=AUTH).status_code == 404
    assert client.get(f"/health/breakers/{name}/open", headers=AUTH).status_code == 405
    with app.app_context():
        assert get_breaker(name).state == "closed"


def test_the_metrics_show_a_forced_breaker(app: Flask) -> None:
    name = breaker_name("gauged")
    circuit_breaker(name)
    client: FlaskClient = app.test_client()
    client.post(f"/health/breakers/{name}/open", headers=AUTH)
    text = client.get("/health/metrics", headers=AUTH).get_data(as_text=True)
    assert f'resilience_circuit_breaker_state{{name="{name}",state="forced-open"}} 1.0' in text
    assert f'resilience_circuit_breaker_state{{name="{name}",state="open"}} 0.0' in text
    client.post(f"/health/breakers/{name}/reset", headers=AUTH)
    text = client.get("/health/metrics", headers=AUTH).get_data(as_text=True)
    assert f'resilience_circuit_breaker_state{{name="{name}",state="closed"}} 1.0' in text
    assert f'resilience_circuit_breaker_state{{name="{name}",state="forced-open"}} 0.0' in text
