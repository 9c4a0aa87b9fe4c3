"""The upload tests' link of the fixture chain: an app with upload views and a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.uploads.helpers import add_upload_views, upload_config


@pytest.fixture
def app_config(app_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    return {**upload_config(tmp_path), **app_config}


@pytest.fixture
def app(app: Flask) -> Flask:
    add_upload_views(app)
    return app
