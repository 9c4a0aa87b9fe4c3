"""The guard tests' link of the fixture chain: an app whose guards know the test users."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_resilience import Resilience
from tests.guards.helpers import GUARDS_CONFIG, add_users


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**GUARDS_CONFIG, **app_config}


@pytest.fixture
def resilience(app: Flask, resilience: Resilience) -> Resilience:
    """The extension with loaders that read ``USERS`` (``add_users``)."""
    add_users(app, resilience)
    return resilience
