"""Configuration: no settings needed, the environment points at services, tests override."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from example_app import create_app
from example_app.config import database_url, env_flag
from example_app.extensions import db
from flask_resilience import StartupCheckFailed


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "OUTBOUND_URL",
        "SECRET_KEY",
        "HEALTH_TOKEN",
        "VALIDATE_ON_STARTUP",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def unreachable_database() -> str:
    """A PostgreSQL URL on a local port where nothing listens: refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql+psycopg://app@127.0.0.1:{port}/documents"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "sqlite:///example.db"),
        ("", "sqlite:///example.db"),
        ("postgres://u:p@db:5432/docs", "postgresql+psycopg://u:p@db:5432/docs"),
        (
            "postgresql://u:p@db/docs?sslmode=require",
            "postgresql+psycopg://u:p@db/docs?sslmode=require",
        ),
        ("postgresql+psycopg://u@db/docs", "postgresql+psycopg://u@db/docs"),
        ("sqlite:////srv/docs.db", "sqlite:////srv/docs.db"),
    ],
)
def test_database_url(given: str | None, expected: str) -> None:
    assert database_url(given) == expected


def test_runs_with_no_configuration(tmp_path: Path) -> None:
    # Outside tests the startup checks run, and pass on the defaults.
    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    assert app.config["RESILIENCE_VALIDATE_ON_STARTUP"] is True

    with app.app_context():
        url = db.engine.url
    assert url.get_backend_name() == "sqlite"
    assert Path(url.database or "") == tmp_path / "example.db"
    assert app.config["OUTBOUND_URL"] == "http://127.0.0.1:9/"
    assert app.config["OUTBOUND_TIMEOUT"] == 2.0
    assert app.config["UPLOAD_FOLDER"] == str(tmp_path / "uploads")
    # Not from the environment: flask_resilience's default, per process.
    assert app.config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert "resilience" in app.extensions


def test_secret_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = create_app({"INSTANCE_PATH": str(tmp_path)})
    second = create_app({"INSTANCE_PATH": str(tmp_path)})

    key_file = tmp_path / "secret_key"
    assert len(first.config["SECRET_KEY"]) == 64
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    assert key_file.read_text().strip() == first.config["SECRET_KEY"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_health_token_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = create_app({"INSTANCE_PATH": str(tmp_path)})
    second = create_app({"INSTANCE_PATH": str(tmp_path)})

    token_file = tmp_path / "health_token"
    token = first.config["RESILIENCE_HEALTH_TOKEN"]
    assert len(token) == 64 and token != first.config["SECRET_KEY"]
    assert second.config["RESILIENCE_HEALTH_TOKEN"] == token
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app:secret@db.internal:5432/documents")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    monkeypatch.setenv("OUTBOUND_URL", "http://partner.internal/status")
    monkeypatch.setenv("SECRET_KEY", "from the environment, long enough to sign")
    monkeypatch.setenv("HEALTH_TOKEN", "from the environment too")
    # Off: the services above do not exist; test_startup_checks_* run the checks.
    monkeypatch.setenv("VALIDATE_ON_STARTUP", "off")

    app = create_app({"INSTANCE_PATH": str(tmp_path)})

    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    assert (url.drivername, url.host, url.database) == (
        "postgresql+psycopg",
        "db.internal",
        "documents",
    )
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis://cache.internal:6379/0"
    assert app.config["OUTBOUND_URL"] == "http://partner.internal/status"
    assert app.config["SECRET_KEY"] == "from the environment, long enough to sign"
    assert app.config["RESILIENCE_HEALTH_TOKEN"] == "from the environment too"
    assert app.config["RESILIENCE_VALIDATE_ON_STARTUP"] is False
    assert not (tmp_path / "secret_key").exists()
    assert not (tmp_path / "health_token").exists()


def test_test_config_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app@db/documents")
    monkeypatch.setenv("SECRET_KEY", "from the environment, long enough to sign")

    app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": "sqlite:///other.db",
            "SECRET_KEY": "from the test, long enough to sign sessions",
        }
    )

    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///other.db"
    assert app.config["SECRET_KEY"] == "from the test, long enough to sign sessions"


def test_startup_checks_refuse_an_unreachable_database(
    tmp_path: Path, unreachable_database: str
) -> None:
    config = {
        "INSTANCE_PATH": str(tmp_path),
        "SQLALCHEMY_DATABASE_URI": unreachable_database,
        "RESILIENCE_STARTUP_RETRIES": 1,
    }
    with pytest.raises(StartupCheckFailed, match="database default"):
        create_app(config)


@pytest.mark.parametrize(
    ("environment", "testing"), [(None, True), ("0", False), ("off", True), ("no", False)]
)
def test_startup_checks_are_off_in_tests_or_when_the_environment_says_so(
    tmp_path: Path,
    unreachable_database: str,
    monkeypatch: pytest.MonkeyPatch,
    environment: str | None,
    testing: bool,
) -> None:
    if environment is not None:
        monkeypatch.setenv("VALIDATE_ON_STARTUP", environment)
    app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": unreachable_database,
            "RESILIENCE_STARTUP_RETRIES": 1,
            "TESTING": testing,
        }
    )
    assert app.config["RESILIENCE_VALIDATE_ON_STARTUP"] is False


def test_startup_checks_can_be_asked_for_in_tests(
    tmp_path: Path, unreachable_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VALIDATE_ON_STARTUP", "1")
    config = {
        "INSTANCE_PATH": str(tmp_path),
        "SQLALCHEMY_DATABASE_URI": unreachable_database,
        "RESILIENCE_STARTUP_RETRIES": 1,
        "TESTING": True,
    }
    with pytest.raises(StartupCheckFailed):
        create_app(config)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("TRUE", True), (" yes ", True), ("on", True), ("0", False), ("Off", False)],
)
def test_env_flag(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("SOME_FLAG", value)
    assert env_flag("SOME_FLAG", default=not expected) is expected


def test_env_flag_refuses_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_flag("SOME_FLAG", default=True) is True
    monkeypatch.setenv("SOME_FLAG", "ture")
    with pytest.raises(ValueError, match="SOME_FLAG='ture'"):
        env_flag("SOME_FLAG", default=True)


def test_the_demo_starts_without_advice(tmp_path: Path) -> None:
    """``make demo`` prints no warning: the Makefile says in one line what production sets.

    In a subprocess: the demo's warning filter is the whole process's.
    """
    import os
    import subprocess
    import sys

    script = "from example_app import create_app; create_app()"
    environment = {**os.environ, "EXAMPLE_DEMO": "1", "INSTANCE_PATH": str(tmp_path)}
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "HEALTH_TOKEN", "VALIDATE_ON_STARTUP"):
        environment.pop(name, None)
    demo = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert demo.returncode == 0, demo.stderr
    assert demo.stderr == ""
    production = subprocess.run(
        [sys.executable, "-c", script],
        env={**environment, "EXAMPLE_DEMO": "0"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "SESSION_COOKIE_SECURE is False" in production.stderr  # the advice it silences
