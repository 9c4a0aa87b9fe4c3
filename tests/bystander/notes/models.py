"""Users and their notes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import Model, db, login_manager


def utcnow() -> datetime:
    """Naive UTC: SQLite keeps no time zone, so what is stored compares with what is read."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class User(UserMixin, Model):
    """Someone who can log in and keep notes."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Kept current by the before_request hook; shown on the profile page.
    last_seen: Mapped[datetime | None] = mapped_column(default=None)
    visits: Mapped[int] = mapped_column(default=0)

    notes: Mapped[list[Note]] = relationship(
        back_populates="author", cascade="all, delete-orphan", order_by="Note.id"
    )

    def set_password(self, password: str) -> None:
        """Store a hash; the method is configurable so that tests can use a cheap one."""
        method = current_app.config["PASSWORD_HASH_METHOD"]
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<User {self.email}>"


class Note(Model):
    """A short text a user keeps for themselves."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)

    author: Mapped[User] = relationship(back_populates="notes")

    def to_dict(self) -> dict[str, Any]:
        """The note as the API shows it."""
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "author_id": self.author_id,
        }

    def __repr__(self) -> str:
        return f"<Note {self.id} {self.title!r}>"


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Flask-Login keeps the id in the session; this turns it back into a user."""
    return db.session.get(User, int(user_id))
