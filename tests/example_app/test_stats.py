"""The statistics endpoint adds up exactly the caller's organization's rows."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select

from example_app.extensions import db
from example_app.models import Document, User

from .helpers import basic_auth, on_both_backends

CONTENT_TYPES = ["application/pdf", "image/png", "text/csv", "text/plain"]


@pytest.fixture
def app_config(app_config: dict[str, Any], backend: str) -> dict[str, Any]:
    if backend == "postgres":
        # Sessions fourteen hours ahead of UTC: the days must still be UTC days.
        app_config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "connect_args": {"options": "-c TimeZone=Pacific/Kiritimati"}
        }
    return app_config


def make_rows(owners: list[User], count: int, rng: random.Random) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    rows = []
    for number in range(count):
        owner = rng.choice(owners)
        rows.append(
            {
                "organization_id": owner.organization_id,
                "owner_id": owner.id,
                "title": f"Document {number}",
                "original_filename": f"document-{number}.bin",
                "stored_name": uuid.uuid4().hex,
                "content_type": rng.choice(CONTENT_TYPES),
                # Up to 10 MB each: the totals overflow a 32-bit integer.
                "size": rng.randrange(1, 10_000_000),
                # 45 days back, so some rows fall outside the 30-day window.
                "created_at": now - timedelta(seconds=rng.randrange(45 * 86400)),
            }
        )
    return rows


def totals(rows: list[dict[str, Any]], key: str) -> dict[Any, tuple[int, int]]:
    figures: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        figures[row[key]][0] += 1
        figures[row[key]][1] += row["size"]
    return {group: (count, size) for group, (count, size) in figures.items()}


@on_both_backends
def test_stats_equal_the_rows(app: Flask, client: FlaskClient) -> None:
    rng = random.Random(2024)
    with app.app_context():
        users = {user.email: user for user in db.session.scalars(select(User))}
        acme_rows = make_rows([users["alice@acme.test"], users["bob@acme.test"]], 400, rng)
        globex_rows = make_rows([users["dave@globex.test"]], 100, rng)
        db.session.execute(insert(Document), acme_rows + globex_rows)
        db.session.commit()
        emails = {user.id: email for email, user in users.items()}

    stats = client.get("/api/stats", headers=basic_auth("carol@acme.test")).get_json()

    assert stats["total"] == {
        "count": len(acme_rows),
        "size": sum(row["size"] for row in acme_rows),
    }

    by_type = totals(acme_rows, "content_type")
    assert {
        entry["content_type"]: (entry["count"], entry["size"]) for entry in stats["by_content_type"]
    } == by_type
    counts = [entry["count"] for entry in stats["by_content_type"]]
    assert counts == sorted(counts, reverse=True)

    by_owner = totals(acme_rows, "owner_id")
    assert {
        entry["owner"]["id"]: (entry["count"], entry["size"]) for entry in stats["by_owner"]
    } == by_owner
    assert {entry["owner"]["email"] for entry in stats["by_owner"]} == {
        emails[owner_id] for owner_id in by_owner
    }

    today = datetime.now(timezone.utc).date()
    days = [today - timedelta(days=29 - offset) for offset in range(30)]
    by_day = totals([{**row, "day": row["created_at"].date()} for row in acme_rows], "day")
    assert [entry["day"] for entry in stats["by_day"]] == [day.isoformat() for day in days]
    assert [(entry["count"], entry["size"]) for entry in stats["by_day"]] == [
        by_day.get(day, (0, 0)) for day in days
    ]
    # The window really cuts: the rows are spread over 45 days.
    assert sum(entry["count"] for entry in stats["by_day"]) < len(acme_rows)


def test_stats_of_an_empty_organization(client: FlaskClient) -> None:
    stats = client.get("/api/stats", headers=basic_auth("dave@globex.test")).get_json()

    assert stats["total"] == {"count": 0, "size": 0}
    assert stats["by_content_type"] == []
    assert stats["by_owner"] == []
    assert len(stats["by_day"]) == 30
    assert all(entry["count"] == entry["size"] == 0 for entry in stats["by_day"])
