"""``flask init-db``: the schema and a demo data set large enough for the statistics.

Running it again changes nothing: accounts are looked up before they are
created, and an organization that already has documents gets no more. The
documents come from a seeded random generator, so every install gets the same
titles, owners, types and sizes.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, insert, select

from .documents import organization_folder
from .extensions import db
from .models import Document, Organization, Role, User
from .permissions import permissions_of

ORGANIZATIONS = {"acme": "Acme", "globex": "Globex"}
ACCOUNTS = (
    ("alice@acme.test", Role.ADMIN, "acme"),
    ("bob@acme.test", Role.MEMBER, "acme"),
    ("carol@acme.test", Role.VIEWER, "acme"),
    ("dave@globex.test", Role.ADMIN, "globex"),
)
DOCUMENT_COUNTS = {"acme": 1500, "globex": 500}
FILES_PER_ORGANIZATION = 5
SPREAD_DAYS = 30


@dataclass(frozen=True)
class Kind:
    extension: str
    content_type: str
    weight: int
    sizes: tuple[int, int]
    titles: tuple[str, ...]


KINDS = (
    Kind(".pdf", "application/pdf", 30, (40_000, 4_000_000), ("Contract", "Invoice", "Report")),
    Kind(
        ".docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        20,
        (15_000, 900_000),
        ("Meeting notes", "Proposal", "Memo"),
    ),
    Kind(
        ".xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        15,
        (8_000, 2_000_000),
        ("Budget", "Forecast", "Inventory"),
    ),
    Kind(".png", "image/png", 15, (20_000, 3_000_000), ("Screenshot", "Diagram")),
    Kind(".jpg", "image/jpeg", 10, (80_000, 6_000_000), ("Site photo", "Product shot")),
    Kind(".csv", "text/csv", 5, (500, 500_000), ("Sales export", "Contacts")),
    Kind(".txt", "text/plain", 5, (100, 50_000), ("Readme", "Changelog")),
)
TEXT = KINDS[-1]


def password_for(email: str) -> str:
    return f"{email.split('@')[0]}-password"


def seed_accounts() -> dict[str, User]:
    """The demo organizations and users, created if missing; keyed by email."""
    organizations = {org.slug: org for org in db.session.scalars(select(Organization))}
    for slug, name in ORGANIZATIONS.items():
        if slug not in organizations:
            organizations[slug] = Organization(slug=slug, name=name)
            db.session.add(organizations[slug])

    emails = [email for email, _, _ in ACCOUNTS]
    users = {u.email: u for u in db.session.scalars(select(User).where(User.email.in_(emails)))}
    hash_method = current_app.config["PASSWORD_HASH_METHOD"]
    for email, role, slug in ACCOUNTS:
        if email not in users:
            user = User(email=email, role=role, organization=organizations[slug])
            user.set_password(password_for(email), method=hash_method)
            db.session.add(user)
            users[email] = user
    db.session.flush()
    return users


def seed_documents(organization: Organization, owners: list[User], count: int) -> int:
    """Bulk-insert ``count`` documents unless the organization has some; returns how many."""
    if db.session.scalar(select(Document.id).filter_by(organization_id=organization.id).limit(1)):
        return 0

    rng = random.Random(f"documents:{organization.slug}")
    now = datetime.now(timezone.utc)
    # From the start of the first day the statistics window shows, up to an hour
    # ago: the last hour is kept for the newest rows, those with files.
    start = datetime.combine(
        now.date() - timedelta(days=SPREAD_DAYS - 1), time.min, tzinfo=timezone.utc
    )
    window_seconds = int((now - timedelta(hours=1) - start).total_seconds())
    folder = organization_folder(organization.id)
    folder.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        kind = rng.choices(KINDS, weights=[k.weight for k in KINDS])[0]
        with_file = number <= FILES_PER_ORGANIZATION
        if with_file:
            # A few real files so that downloads work; the rest are rows only.
            kind = TEXT
        title = f"{rng.choice(kind.titles)} {number:04d}"
        stored_name = uuid.UUID(int=rng.getrandbits(128), version=4).hex + kind.extension
        size = rng.randint(*kind.sizes)
        created_at = start + timedelta(seconds=rng.randrange(window_seconds))
        if with_file:
            # The newest, so that the first page of the list has downloads that work.
            created_at = now - timedelta(minutes=number)
            content = demo_text(organization, title).encode()
            (folder / stored_name).write_bytes(content)
            size = len(content)
        rows.append(
            {
                "organization_id": organization.id,
                "owner_id": rng.choice(owners).id,
                "title": title,
                "original_filename": title.lower().replace(" ", "-") + kind.extension,
                "stored_name": stored_name,
                "content_type": kind.content_type,
                "size": size,
                "created_at": created_at,
            }
        )
    # One executemany-style INSERT instead of 2,000 ORM objects.
    db.session.execute(insert(Document), rows)
    return count


def demo_text(organization: Organization, title: str) -> str:
    return f"{title}\n\nA demo document of {organization.name}.\n"


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the tables and the demo organizations, users and documents."""
    db.create_all()
    users = seed_accounts()
    added = 0
    for slug, count in DOCUMENT_COUNTS.items():
        owners = [
            user
            for user in users.values()
            if user.organization.slug == slug and "documents:write" in permissions_of(user)
        ]
        added += seed_documents(owners[0].organization, owners, count)
    db.session.commit()

    totals = {
        model.__name__: db.session.scalar(select(func.count()).select_from(model))
        for model in (Organization, User, Document)
    }
    click.echo(
        f"Database ready: {totals['Organization']} organizations, {totals['User']} users,"
        f" {totals['Document']} documents ({added} added)."
    )
    click.echo("Log in as alice@acme.test with the password alice-password.")
