"""Small apps for the health tests; ``create_app`` also serves the gunicorn tests.

Under gunicorn the configuration comes as JSON in ``HEALTH_TEST_CONFIG``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from flask import Flask, abort

from flask_resilience import Resilience
from flask_resilience.health import HealthState
from flask_resilience.state import get_state

TOKEN = "test-token-1234567890"
CREATED: list[Flask] = []


def stop_monitors() -> None:
    """Stop the monitor thread of every app made so far in this process."""
    while CREATED:
        app = CREATED.pop()
        health = get_state(app).find(HealthState)
        if health is not None:
            health.monitor.stop()


def create_app(**config: Any) -> Flask:
    config = {**json.loads(os.environ.get("HEALTH_TEST_CONFIG", "{}")), **config}
    app = Flask(__name__, instance_path=config.pop("instance_path", None))
    slow_check = config.pop("slow_check", None)
    app.config.update(RESILIENCE_HEALTH_TOKEN=TOKEN, RESILIENCE_MONITOR_INTERVAL=0.2)
    app.config.update(config)
    resilience = Resilience()
    resilience.init_app(app)

    if slow_check is not None:
        # Keeps a sync worker busy, so that concurrent probes reach every worker.
        resilience.health_check("slow")(lambda: time.sleep(slow_check))

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

    app.extensions["test_resilience"] = resilience
    CREATED.append(app)
    return app
