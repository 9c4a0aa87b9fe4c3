"""Small apps for the health tests; ``create_app`` also serves the gunicorn tests.

Under gunicorn the configuration comes as JSON in ``HEALTH_TEST_CONFIG``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from flask import Flask, abort
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from flask_resilience import Resilience, bulkhead, circuit_breaker

TOKEN = "test-token-1234567890"
# In database URLs, for the tests that look for it in what the endpoints answer.
PASSWORD = "s3cret-Pa55word-xyz"
# The configuration of every app of the health tests, under the test's own.
HEALTH_CONFIG = {"RESILIENCE_HEALTH_TOKEN": TOKEN, "RESILIENCE_MONITOR_INTERVAL": 0.2}


def create_app(**config: Any) -> Flask:
    """A health test app with the extension, which ``extension_of(app)`` gives back."""
    config = {**json.loads(os.environ.get("HEALTH_TEST_CONFIG", "{}")), **config}
    app = Flask(__name__, instance_path=config.pop("instance_path", None))
    slow_check = config.pop("slow_check", None)
    dashboard_parts = config.pop("dashboard_parts", False)
    app.config.update(HEALTH_CONFIG)
    app.config.update(config)
    resilience = Resilience()
    resilience.init_app(app)

    if slow_check is not None:
        # Keeps a sync worker busy, so that concurrent probes reach every worker.
        resilience.health_check("slow")(lambda: time.sleep(slow_check))

    add_health_views(app)
    if dashboard_parts:
        add_dashboard_parts(app)
    app.extensions["test_resilience"] = resilience
    return app


def extension_of(app: Flask) -> Resilience:
    """The extension ``create_app`` put on ``app``."""
    extension: Resilience = app.extensions["test_resilience"]
    return extension


def add_health_views(app: Flask) -> None:
    """A page, a failing view and one that sleeps: requests for the metrics to count."""

    @app.get("/")
    def hello() -> str:
        return "hello"

    @app.get("/fail")
    def fail() -> str:
        abort(500)

    @app.get("/sleep/<float:seconds>")
    def sleep(seconds: float) -> str:
        time.sleep(seconds)
        return str(os.getpid())


BREAKER = "dashboard-payments"
BULKHEAD = "dashboard-reports"


def add_dashboard_parts(app: Flask) -> None:
    """A view behind a circuit breaker and one behind a bulkhead, for the dashboard."""

    @circuit_breaker(BREAKER)
    def charge() -> str:
        return "charged"

    @bulkhead(2, name=BULKHEAD)
    def report() -> str:
        return "reported"

    @app.get("/charge")
    def pay() -> str:
        return charge()

    @app.get("/report")
    def make_report() -> str:
        return report()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: FlaskClient) -> Samples:
    """Every sample of ``/health/metrics`` by name and sorted labels."""
    response = client.get("/health/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    values = {}
    for family in text_string_to_metric_families(response.data.decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values
