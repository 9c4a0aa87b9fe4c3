"""Configuration: no settings needed, the environment points at services, tests override."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from example_app import create_app
from example_app.config import database_url
from example_app.extensions import db


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "OUTBOUND_URL", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)


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
    app = create_app({"INSTANCE_PATH": str(tmp_path)})

    with app.app_context():
        url = db.engine.url
    assert url.get_backend_name() == "sqlite"
    assert Path(url.database or "") == tmp_path / "example.db"
    assert app.config["OUTBOUND_URL"] == "http://127.0.0.1:9/"
    assert app.config["OUTBOUND_TIMEOUT"] == 2.0
    assert app.config["UPLOAD_FOLDER"] == str(tmp_path / "uploads")
    assert "RATELIMIT_STORAGE_URI" not in app.config
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


def test_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app:secret@db.internal:5432/documents")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    monkeypatch.setenv("OUTBOUND_URL", "http://partner.internal/status")
    monkeypatch.setenv("SECRET_KEY", "from the environment, long enough to sign")

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
    assert not (tmp_path / "secret_key").exists()


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
