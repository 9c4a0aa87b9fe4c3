"""Fixtures of the health tests."""

from __future__ import annotations

from tests.health_helpers import health_postgres, stop_monitors

__all__ = ["health_postgres", "stop_monitors"]
