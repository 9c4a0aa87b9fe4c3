"""Logging in and out with a form."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from .extensions import db
from .forms import LoginForm
from .models import User

bp = Blueprint("auth", __name__)
logger = logging.getLogger(__name__)


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: an absolute URL in ``next`` would be an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("notes.index"))
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.scalar(select(User).where(User.email == email))
        if user is not None and user.check_password(form.password.data):
            login_user(user, remember=form.remember.data)
            current_app.logger.info("User %s logged in", user.id)
            flash(f"Welcome back, {user.name}.", "success")
            return redirect(_safe_next(request.args.get("next")) or url_for("notes.index"))
        # Which of the two was wrong is not said: that would tell who has an account.
        logger.warning("Failed login for %s", email)
        form.password.errors.append("Wrong email or password.")
    return render_template("auth/login.html", form=form)


@bp.route("/logout")
@login_required
def logout() -> ResponseReturnValue:
    current_app.logger.info("User %s logged out", current_user.id)
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("notes.index"))
