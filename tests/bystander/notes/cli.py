"""``flask create-user``: accounts are made by an administrator, there is no sign-up."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from .extensions import db
from .models import User


@click.command("create-user")
@click.argument("email")
@click.argument("name")
@click.password_option()
@with_appcontext
def create_user_command(email: str, name: str, password: str) -> None:
    """Create a user who can log in with EMAIL and the password."""
    email = email.strip().lower()
    if db.session.scalar(select(User).where(User.email == email)) is not None:
        raise click.ClickException(f"A user with the email {email} exists already.")
    user = User(email=email, name=name)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    click.echo(f"Created user {user.id} <{email}>.")
