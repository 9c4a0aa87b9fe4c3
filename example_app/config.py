"""Configuration: sensible defaults, a few environment variables, and the test overrides.

The app runs with no configuration at all (SQLite in the instance folder, a secret
key and a health token generated on first start); the environment only points it
at real services.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from flask_resilience import ResilienceWarning

SECRET_KEY_FILE = "secret_key"
HEALTH_TOKEN_FILE = "health_token"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def configure(app: Flask, test_config: Mapping[str, Any] | None = None) -> None:
    """Fill ``app.config``; ``test_config`` wins over defaults and the environment."""
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(
        # Relative SQLite paths are resolved against the instance folder by Flask-SQLAlchemy.
        SQLALCHEMY_DATABASE_URI=database_url(os.environ.get("DATABASE_URL")),
        UPLOAD_FOLDER=os.path.join(app.instance_path, "uploads"),
        # Werkzeug answers 413 before the view reads a larger body.
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        DOCUMENTS_PER_PAGE=20,
        DOCUMENTS_MAX_PER_PAGE=100,
        PASSWORD_HASH_METHOD="scrypt",
        # Port 9 is "discard": nothing answers there, which is what the degradation demo needs.
        OUTBOUND_URL=os.environ.get("OUTBOUND_URL", "http://127.0.0.1:9/"),
        OUTBOUND_TIMEOUT=2.0,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SAMESITE="Lax",
        # Flask-Limiter's limit shared by every route: 100 requests a minute per client.
        RATELIMIT_APPLICATION="100 per minute",
        # Ten seconds a request, its statements and outbound calls included; one still
        # running then is interrupted and answered 504 (gunicorn's timeout is longer).
        RESILIENCE_REQUEST_TIMEOUT=10,
        RESILIENCE_INTERRUPT_ON_DEADLINE=True,
        # The views that read the documents share one bulkhead (api.py): with gthread
        # workers of 4 threads, a slow documents table takes 3 of them at most, and the
        # fourth answers the health probes and the other views.
        RESILIENCE_BULKHEAD_MAX_CONCURRENT=3,
    )
    if redis_url := os.environ.get("REDIS_URL"):
        app.config["RATELIMIT_STORAGE_URI"] = redis_url
    if secret_key := os.environ.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key
    if health_token := os.environ.get("HEALTH_TOKEN"):
        app.config["RESILIENCE_HEALTH_TOKEN"] = health_token
    # Any other key, the Flask way: FLASK_RESILIENCE_REQUEST_TIMEOUT=5 sets
    # RESILIENCE_REQUEST_TIMEOUT to 5 (values are read as JSON where they parse).
    app.config.from_prefixed_env()

    if test_config is not None:
        app.config.from_mapping(test_config)

    # Only now, once TESTING is known: a server refuses to start half-working (an
    # unreachable database, an unwritable upload folder), while a test suite, which
    # builds an app per test, skips the checks unless it asks for them.
    app.config.setdefault(
        "RESILIENCE_VALIDATE_ON_STARTUP",
        env_flag("VALIDATE_ON_STARTUP", default=not app.config.get("TESTING")),
    )
    # Only now too: a test that brings its own key must not leave a key file behind.
    instance = Path(app.instance_path)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(instance, SECRET_KEY_FILE)
    if not app.config.get("RESILIENCE_HEALTH_TOKEN"):
        app.config["RESILIENCE_HEALTH_TOKEN"] = instance_secret(instance, HEALTH_TOKEN_FILE)


def log_to_stderr() -> None:
    """Send log records to stderr, unless the server or a test already set up logging.

    Under gunicorn, which sets up its own loggers only, the app's records (and the
    extension's, which go where the app's go) would otherwise reach stderr through
    Flask's default handler only, without the level and time this format gives.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
        )


def quiet_demo_advice(app: Flask) -> None:
    """``make demo`` (``EXAMPLE_DEMO=1``): no advice meant for production.

    The demo serves plain HTTP on 127.0.0.1 with two workers counting rate limits on
    their own, on purpose; the extension would rightly advise against both, as a
    warning or, with the startup checks on, in their log. The Makefile says in one
    line what a production deployment sets instead. A failed check still stops it.
    """
    if env_flag("EXAMPLE_DEMO", default=False):
        warnings.filterwarnings("ignore", category=ResilienceWarning)
        logging.getLogger(f"{app.name}.flask_resilience.startup").setLevel(logging.ERROR)


def env_flag(name: str, default: bool) -> bool:
    """The environment variable ``name`` as a boolean; a value that is neither is an error.

    A typo must not turn a safety check off without a word.
    """
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{name}={os.environ[name]!r}: expected one of {', '.join(sorted(_TRUE | _FALSE))}."
    )


def database_url(url: str | None) -> str:
    """The SQLAlchemy URL for ``DATABASE_URL``, SQLite in the instance folder without it.

    Hosting platforms hand out ``postgres://`` and ``postgresql://`` URLs; SQLAlchemy
    dropped the first spelling and would pick psycopg2 for the second, so both are
    rewritten to the psycopg 3 driver this project installs.
    """
    if not url:
        return "sqlite:///example.db"
    scheme, separator, rest = url.partition("://")
    if separator and scheme in {"postgres", "postgresql"}:
        return f"postgresql+psycopg://{rest}"
    return url


def instance_secret(instance_path: Path, name: str) -> str:
    """The secret kept in the file ``name`` of the instance folder, created on first use.

    Every gunicorn worker builds its own app; they must agree on one secret or a
    session signed by one worker is rejected by the other (and a health token
    would work with one worker only). The secret is written to a private temporary
    file and hard-linked into place, which fails if another process got there
    first; the loser then reads the winner's complete secret.
    """
    path = instance_path / name
    if path.exists():
        return path.read_text().strip()

    temporary = instance_path / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another worker won: use its key
            os.link(temporary, path)
    finally:
        temporary.unlink()
    return path.read_text().strip()
