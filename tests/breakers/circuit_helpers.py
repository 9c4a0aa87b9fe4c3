"""What the circuit breaker tests share: breaker names, apps, a dependency to break."""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Flask

from flask_resilience import Resilience


def breaker_name(prefix: str) -> str:
    """A name no other breaker of the process has: the registry of definitions is per process."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def app_with(instance_path: str | None = None, **config: Any) -> Flask:
    """An app with the extension on it, whose configuration gives the breakers' defaults."""
    app = Flask(__name__, instance_path=instance_path)
    app.config.update(config)
    Resilience(app)
    return app


class Dependency:
    """A dependency that fails while ``failing`` is set and takes ``delay`` seconds."""

    def __init__(self, *, failing: bool = False, delay: float = 0.0) -> None:
        self.failing = failing
        self.delay = delay
        self.calls = 0

    def __call__(self, value: str = "ok") -> str:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.failing:
            raise ConnectionError("dependency down")
        return value
