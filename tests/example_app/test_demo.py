"""``flask init-db``: the demo data set, created once however often the command runs."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage

from example_app import create_app
from example_app.demo import TEXT
from example_app.documents import DOCUMENT_UPLOADS
from example_app.extensions import db
from example_app.models import Document, Organization, User
from flask_resilience.uploads import check_upload

from .helpers import basic_auth, on_both_backends


def row_counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {
            model.__name__: db.session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Organization, User, Document)
        }


def init_db(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    return result.output


@on_both_backends
def test_init_db_is_idempotent(app_config: dict[str, object], instance_path: Path) -> None:
    # A fresh app: the usual app fixture has already created the accounts.
    app = create_app(app_config)
    try:
        first_output = init_db(app)
        counts = row_counts(app)
        files = sorted((instance_path / "uploads").rglob("*"))

        second_output = init_db(app)

        assert counts == {"Organization": 2, "User": 4, "Document": 2000}
        assert row_counts(app) == counts
        assert sorted((instance_path / "uploads").rglob("*")) == files
        assert "(2000 added)" in first_output
        assert "(0 added)" in second_output
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


def test_demo_data(app_config: dict[str, object], instance_path: Path) -> None:
    app = create_app(app_config)
    init_db(app)
    client = app.test_client()
    alice = basic_auth("alice@acme.test")

    me = client.get("/api/me", headers=alice).get_json()
    assert me["role"] == "admin" and me["organization"]["slug"] == "acme"
    roles = {
        email: client.get("/api/me", headers=basic_auth(email)).get_json()["role"]
        for email in ("bob@acme.test", "carol@acme.test", "dave@globex.test")
    }
    assert roles == {
        "bob@acme.test": "member",
        "carol@acme.test": "viewer",
        "dave@globex.test": "admin",
    }

    stats = client.get("/api/stats", headers=alice).get_json()
    assert stats["total"]["count"] == 1500
    assert len(stats["by_content_type"]) == 7
    assert {entry["owner"]["email"] for entry in stats["by_owner"]} == {
        "alice@acme.test",
        "bob@acme.test",
    }
    # Spread over the 30 days the statistics cover, every one of them.
    assert sum(entry["count"] for entry in stats["by_day"]) == 1500
    assert all(entry["count"] > 0 for entry in stats["by_day"])

    # The newest documents have files behind them, so the first page downloads.
    newest = client.get("/api/documents?per_page=5", headers=alice).get_json()["items"]
    for document in newest:
        with client.get(document["download_url"], headers=alice) as download:
            assert download.status_code == 200
            assert len(download.data) == document["size"]
            assert download.mimetype == document["content_type"]
            assert download.headers["X-Content-Type-Options"] == "nosniff"
    files = list((instance_path / "uploads").rglob("*.txt"))
    assert len(files) == 10

    # Each demo file is what an upload would have recorded: accepted by the same
    # policy, with the type detected from its content.
    with app.test_request_context():
        for path in files:
            with path.open("rb") as stream:
                check = check_upload(FileStorage(stream, path.name), policy=DOCUMENT_UPLOADS)
            assert check.info is not None, check.error
            assert check.info.mime_type == TEXT.content_type


def test_demo_data_is_deterministic(tmp_path: Path, app_config: dict[str, object]) -> None:
    def documents(instance: Path) -> list[tuple[object, ...]]:
        app = create_app({**app_config, "INSTANCE_PATH": str(instance)})
        init_db(app)
        with app.app_context():
            return [
                tuple(row)
                for row in db.session.execute(
                    select(
                        Document.title,
                        Document.stored_name,
                        Document.content_type,
                        Document.size,
                        Document.owner_id,
                    ).order_by(Document.id)
                )
            ]

    assert documents(tmp_path / "one") == documents(tmp_path / "two")
