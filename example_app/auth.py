"""Authentication: session login through a form, HTTP Basic for API clients."""

from __future__ import annotations

import re
from functools import lru_cache

from flask import (
    Blueprint,
    Request,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db, login_manager, resilience
from .models import ID_MAX, User
from .security import check_csrf, is_safe_redirect

bp = Blueprint("auth", __name__)
bp.before_request(check_csrf)

API_REALM = "Documents API"

# Per client address. Enough for someone mistyping a password, far too few to guess one.
LOGIN_ATTEMPTS = "10 per minute"

# As Flask-Login writes a user's id: ASCII digits, no sign, no leading zero, at most ID_MAX.
_USER_ID = re.compile(r"[1-9][0-9]{0,9}")


def current_account() -> User:
    """The logged-in user, typed; only for views behind ``login_required``."""
    user = current_user._get_current_object()
    assert isinstance(user, User), "view is missing login_required"
    return user


def authenticate(email: str, password: str) -> User | None:
    """The user with these credentials, or ``None``."""
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        # Spend the time a real check takes, so response times do not reveal
        # which email addresses have an account.
        check_password_hash(_dummy_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)
        return None
    return user if user.check_password(password) else None


@lru_cache(maxsize=4)
def _dummy_hash(method: str) -> str:
    return generate_password_hash("not a password", method=method)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    # The id comes from the session cookie. One that is not an id names nobody: Flask-Login
    # expects None then, and an exception would answer 500 on every page for that cookie.
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        return None
    number = int(user_id)
    return db.session.get(User, number) if number <= ID_MAX else None


@login_manager.request_loader
def load_user_from_request(req: Request) -> User | None:
    # Runs only when the session has no user: curl -u and scripts need no cookie jar.
    auth = req.authorization
    if auth is None or auth.type != "basic" or not auth.username or auth.password is None:
        return None
    return authenticate(auth.username, auth.password)


@login_manager.unauthorized_handler
def unauthorized() -> ResponseReturnValue:
    if request.blueprint == "api":
        # Raised, not returned: flask_resilience turns it into a problem+json answer.
        raise Unauthorized(
            "Send HTTP Basic credentials or log in first.",
            www_authenticate=WWWAuthenticate("basic", {"realm": API_REALM}),
        )
    flash("Please log in to see this page.", "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def failed_basic_auth(response: Response) -> bool:
    """Whether credentials were sent and refused: what the API's attempt limit counts."""
    return response.status_code == 401 and request.authorization is not None


def limit_basic_auth_failures(api: Blueprint) -> None:
    """Answer 429 to every API request of a client that sent wrong credentials too often.

    Only refusals count, so scripts that authenticate on every call never reach the
    limit; the default limit still applies to everything else.
    """
    resilience.limiter.shared_limit(
        LOGIN_ATTEMPTS,
        scope="basic-auth-failures",
        deduct_when=failed_basic_auth,
        override_defaults=False,
    )(api)


@bp.route("/login", methods=["GET", "POST"])
# Every password tried counts, right or wrong: the form has no other brake on guessing.
# (A post without the form's CSRF token is refused before the view, checks no
# password, and is not counted.)
@resilience.limit(LOGIN_ATTEMPTS, methods=["POST"])
def login() -> ResponseReturnValue:
    next_url = request.args.get("next")
    if not is_safe_redirect(next_url):
        next_url = None
    if current_user.is_authenticated:
        return redirect(next_url or url_for("pages.documents"))

    email = request.form.get("email", "")
    error = None
    if request.method == "POST":
        user = authenticate(email, request.form.get("password", ""))
        if user is not None:
            login_user(user, remember=request.form.get("remember") == "on")
            return redirect(next_url or url_for("pages.documents"))
        error = "Unknown email address or wrong password."
    return render_template("login.html", email=email, error=error, next_url=next_url)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    # POST only (with the CSRF token): a GET logout can be triggered by any <img> tag.
    logout_user()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))
