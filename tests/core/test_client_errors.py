"""The client error intake: front ends report their errors, bad reports get a 400."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_resilience import ConfigurationError, Resilience

URL = "/api/client-errors"

pytestmark = pytest.mark.config(RESILIENCE_CLIENT_ERRORS_URL=URL)


def test_off_by_default(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    Resilience(app)
    assert app.test_client().post(URL, json={"message": "x"}).status_code == 404


def test_a_report_is_logged_with_the_request_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = client.post(
            URL,
            json={
                "message": "TypeError: x is undefined",
                "url": "/documents",
                "line": 12,
                "level": "warning",
                "context": {"token": "abc", "view": "list"},
            },
        )
    assert response.status_code == 204
    (record,) = [r for r in caplog.records if r.name.endswith("flask_resilience.client")]
    assert "TypeError: x is undefined" in record.getMessage()
    assert response.headers["X-Request-ID"] in record.getMessage()
    assert record.levelno == logging.WARNING
    assert record.client_report["context"] == {"token": "[scrubbed]", "view": "list"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "message"),
        ({"message": 42}, "message"),
        ({"message": "x" * 2001}, "message"),
        ({"message": "x", "line": "twelve"}, "line"),
        ({"message": "x", "line": True}, "line"),
        ({"message": "x", "level": "panic"}, "level"),
        ({"message": "x", "extra": 1}, "extra"),
    ],
)
def test_bad_reports_get_a_400_naming_the_field(
    client: FlaskClient, body: dict[str, object], field: str
) -> None:
    response = client.post(URL, json=body)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert field in {error["field"] for error in response.get_json()["errors"]}


def test_a_body_that_is_not_a_json_object_is_a_400(client: FlaskClient) -> None:
    for data in (b"not json", b"[1, 2]", b'"text"'):
        response = client.post(URL, data=data, content_type="application/json")
        assert response.status_code == 400
        assert response.get_json()["errors"]


def test_an_oversized_report_is_a_413(client: FlaskClient) -> None:
    response = client.post(URL, json={"message": "x", "stack": "y" * 20_000})
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


def test_the_path_must_be_a_path(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigurationError, match="RESILIENCE_CLIENT_ERRORS_URL"):
        Resilience(make_app(RESILIENCE_CLIENT_ERRORS_URL="client-errors"))
