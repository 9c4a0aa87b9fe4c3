"""Helpers shared by the tests of the resilience decorators."""

from __future__ import annotations

import itertools
from typing import Any

from flask import Flask

from flask_resilience import Resilience

_numbers = itertools.count()


def unique(prefix: str) -> str:
    """A breaker or bulkhead name no other test uses: their registries are per process."""
    return f"{prefix}-{next(_numbers)}"


def resilient_app(**config: Any) -> Flask:
    """An app with the extension on it, whose configuration gives the decorators' defaults."""
    app = Flask(__name__)
    app.config.update(config)
    Resilience(app)
    return app


class Flaky:
    """A dependency that fails while ``failing`` is set, counting its calls."""

    def __init__(self) -> None:
        self.failing = True
        self.calls = 0

    def __call__(self, value: str = "ok") -> str:
        self.calls += 1
        if self.failing:
            raise ConnectionError("dependency down")
        return value
