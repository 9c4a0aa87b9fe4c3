"""Notes: a small note-keeping app with pages, a form login and a JSON API."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_login import current_user

from . import api, auth, pages
from .cli import create_user_command
from .errors import register_error_handlers
from .extensions import csrf, db, login_manager
from .models import utcnow

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; ``config`` overrides the defaults (tests pass theirs)."""
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("NOTES_SECRET_KEY", "dev"),
        SQLALCHEMY_DATABASE_URI=os.environ.get("NOTES_DATABASE_URL", "sqlite:///notes.db"),
        LOG_FILE=os.environ.get("NOTES_LOG_FILE", "notes.log"),
        SESSION_COOKIE_SAMESITE="Lax",
        PASSWORD_HASH_METHOD="scrypt",
    )
    if config is not None:
        app.config.from_mapping(config)

    configure_logging(app)
    db.init_app(app)
    login_manager.init_app(app)
    csrf.init_app(app)

    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # JSON clients send no form token; the session cookie is SameSite
    register_error_handlers(app)
    app.before_request(record_last_seen)
    app.cli.add_command(create_user_command)

    app.logger.info("Notes app created")
    return app


def configure_logging(app: Flask) -> None:
    """Everything the app logs at INFO and above goes to ``LOG_FILE`` as well."""
    handler = logging.FileHandler(app.config["LOG_FILE"], encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    app.logger.addHandler(handler)
    app.logger.setLevel(logging.INFO)


def record_last_seen() -> None:
    """Keep the profile's "last seen" and visit count current."""
    if current_user.is_authenticated:
        current_user.last_seen = utcnow()
        current_user.visits += 1
        db.session.commit()
