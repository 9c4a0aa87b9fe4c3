"""Production-like Flask apps for tests that build them outside fixtures."""

from __future__ import annotations

from typing import Any

from flask import Flask

# Session settings that pass the extension's cookie checks, so that no warning
# stands between a test and what it checks.
SAFE_SESSION_SETTINGS = {
    "SECRET_KEY": "3f1d6b0e9a7c42d58e6f1a2b3c4d5e6f7a8b9c0d",
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
}


def production_app(**config: Any) -> Flask:
    """An app configured as in production: not testing, session settings that pass the checks.

    Nothing is cleaned up after it: for apps that hold no database connection past
    the test, or whose test disposes of them itself.
    """
    app = Flask(__name__)
    app.config.update(SAFE_SESSION_SETTINGS, **config)
    return app
