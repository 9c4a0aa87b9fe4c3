"""The tenant model: organizations own users, users upload documents into their organization."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flask_login import UserMixin
from sqlalchemy import BigInteger, DateTime, Enum, ForeignKey, Index, String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import Base, db

if TYPE_CHECKING:
    # db.Model is built from Base at run time, out of a type checker's sight.
    Model = Base
else:
    Model = db.Model


ID_MAX = 2**31 - 1
"""The largest id a row can have: primary keys are INTEGER, 32 bits on PostgreSQL.

A larger number names no row, yet the database refuses it as a parameter (PostgreSQL
past 32 bits, SQLite past 64) instead of finding nothing: check ids from a request
against it.
"""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite has no timezone type and hands back naive values; normalising here keeps
    the rest of the code from comparing naive and aware datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass an aware one so its instant is unambiguous")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)


class Role(str, enum.Enum):
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Organization(Model):
    __tablename__ = "organization"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)

    users: Mapped[list[User]] = relationship(back_populates="organization")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "slug": self.slug}


class User(UserMixin, Model):
    __tablename__ = "user_account"  # "user" is a reserved word in PostgreSQL

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        # Stored as a checked VARCHAR: adding a role later needs no ALTER TYPE.
        Enum(
            Role,
            name="role",
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda roles: [role.value for role in roles],
        ),
        default=Role.MEMBER,
    )
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)

    organization: Mapped[Organization] = relationship(back_populates="users")

    def set_password(self, password: str, method: str = "scrypt") -> None:
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "role": self.role.value,
            "organization": self.organization.to_dict(),
        }


class Document(Model):
    __tablename__ = "document"
    __table_args__ = (
        # Listing pages newest first and the per-day statistics both filter by
        # organization and range over created_at.
        Index("ix_document_organization_created", "organization_id", "created_at"),
        Index("ix_document_organization_content_type", "organization_id", "content_type"),
        Index("ix_document_organization_owner", "organization_id", "owner_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    title: Mapped[str] = mapped_column(String(200))
    original_filename: Mapped[str] = mapped_column(String(255))
    # Only this server-generated name ever reaches the file system.
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    owner: Mapped[User] = relationship()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "organization_id": self.organization_id,
            "owner": {"id": self.owner_id, "email": self.owner.email},
            "title": self.title,
            "original_filename": self.original_filename,
            "content_type": self.content_type,
            "size": self.size,
            "created_at": self.created_at.isoformat(),
        }
