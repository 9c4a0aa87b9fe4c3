"""A small app that checks its database as it starts, served by gunicorn in the startup tests.

``STARTUP_DATABASE_URL`` is its database.
"""

from __future__ import annotations

import logging
import os

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_resilience import Resilience


def create_app() -> Flask:
    logging.basicConfig(level=logging.INFO)  # the extension's records, in the server's log
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="a-test-secret-key-long-enough-to-pass-checks",
        SQLALCHEMY_DATABASE_URI=os.environ["STARTUP_DATABASE_URL"],
        RESILIENCE_VALIDATE_ON_STARTUP=True,
        RATELIMIT_ENABLED=False,
    )
    db = SQLAlchemy(app)
    Resilience(app, db=db)

    @app.get("/one")
    def one() -> str:
        return str(db.session.execute(sa.text("SELECT 1")).scalar())

    return app
