"""Statistics over an organization's documents, aggregated by the database.

Organizations hold thousands of rows; counting them in Python would load every
row on every request, so each figure is one GROUP BY query.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import Date, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from .extensions import db
from .models import Document, User

WINDOW_DAYS = 30


class utc_day(FunctionElement[date]):
    """The UTC calendar day of a timestamp column, spelled for each database."""

    type = Date()
    name = "utc_day"
    inherit_cache = True


@compiles(utc_day)
def _utc_day(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps timestamps as UTC text (see models.UTCDateTime).
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # date() alone would use the session's time zone, which varies by server.
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


_count = func.count(Document.id)
_size = func.coalesce(func.sum(Document.size), 0)


def _figures(count: int, size: Any) -> dict[str, int]:
    # PostgreSQL sums a BIGINT into a NUMERIC, which arrives as a Decimal.
    return {"count": int(count), "size": int(size)}


def organization_stats(organization_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Document count and total size, overall and per content type, owner and day.

    The per-day figures cover the last ``WINDOW_DAYS`` UTC calendar days, today
    included, with a zero entry for a day without uploads so charts need no gaps
    filled in.
    """
    now = now or datetime.now(timezone.utc)
    today = now.astimezone(timezone.utc).date()
    first_day = today - timedelta(days=WINDOW_DAYS - 1)

    in_organization = Document.organization_id == organization_id

    total_count, total_size = db.session.execute(select(_count, _size).where(in_organization)).one()

    by_type = db.session.execute(
        select(Document.content_type, _count, _size)
        .where(in_organization)
        .group_by(Document.content_type)
        .order_by(_count.desc(), Document.content_type)
    ).all()

    by_owner = db.session.execute(
        select(User.id, User.email, _count, _size)
        .join_from(Document, User)
        .where(in_organization)
        .group_by(User.id, User.email)
        .order_by(_count.desc(), User.email)
    ).all()

    created_day = utc_day(Document.created_at)
    since = datetime.combine(first_day, time.min, tzinfo=timezone.utc)
    per_day = {
        row_day: _figures(count, size)
        for row_day, count, size in db.session.execute(
            select(created_day, _count, _size)
            .where(in_organization, Document.created_at >= since)
            .group_by(created_day)
        )
    }

    return {
        "organization_id": organization_id,
        "total": _figures(total_count, total_size),
        "by_content_type": [
            {"content_type": content_type, **_figures(count, size)}
            for content_type, count, size in by_type
        ],
        "by_owner": [
            {"owner": {"id": user_id, "email": email}, **_figures(count, size)}
            for user_id, email, count, size in by_owner
        ],
        "by_day": [
            {"day": day.isoformat(), **per_day.get(day, _figures(0, 0))}
            for day in (first_day + timedelta(days=offset) for offset in range(WINDOW_DAYS))
        ],
    }
