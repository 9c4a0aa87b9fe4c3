"""Helpers that protect the HTML forms: CSRF tokens and safe post-login redirects."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import abort, request, session

_CSRF_SESSION_KEY = "_csrf_token"
CSRF_FIELD = "csrf_token"


def csrf_token() -> str:
    """The session's CSRF token, for a hidden field in every form that posts."""
    token = session.get(_CSRF_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = session[_CSRF_SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """A ``before_request`` hook for blueprints whose POSTs come from our own forms.

    The SameSite=Lax session cookie already keeps most cross-site posts out; the
    token also covers older browsers and same-site subdomains.
    """
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    expected = session.get(_CSRF_SESSION_KEY)
    sent = request.form.get(CSRF_FIELD, "")
    # Compared as bytes: compare_digest refuses strings with non-ASCII characters, and
    # anyone can post one.
    if (
        not isinstance(expected, str)
        or not expected
        or not secrets.compare_digest(sent.encode(), expected.encode())
    ):
        abort(400, description="The form has expired. Reload the page and try again.")


def is_safe_redirect(target: str | None) -> bool:
    """Whether ``target`` stays on this site, so ``?next=`` cannot send users elsewhere.

    Only paths are accepted: browsers treat ``//host`` and ``/\\host`` as other sites.
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc
