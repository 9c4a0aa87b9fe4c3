"""Per-request cost of the session checks and a permission guard, against bare Flask.

Both apps serve the same view, which reads the user id from a signed session
cookie the request carries. The guarded app also checks the session against a
schema and its idle and absolute timeouts, loads the user and its permissions
and checks one. Two cases: the client's cookie was set within the same second
(checked, not re-signed), and every request comes a second or more after the
last, so the refreshed last-use time re-signs the cookie each time.
"""

from __future__ import annotations

import time

from flask import Flask, session

from bench.core import wsgi_caller
from bench.table import Row, compare
from flask_resilience import Resilience, permission_required
from flask_resilience.guards import guard_state

ROUNDS = 15
REPEAT = 1000
SAFE_COOKIES = {
    "SECRET_KEY": "3b9f0c51a27e4d8c96f1b0a4e7d2c5f8a1b4c7d0e3f6a9b2",
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
}


def bare_app() -> Flask:
    app = Flask("bench-bare")
    app.config.update(SAFE_COOKIES)

    @app.get("/docs")
    def docs() -> str:
        return f"docs for {session.get('uid')}"

    return app


def guarded_app() -> Flask:
    app = Flask("bench-guards")
    app.config.update(
        SAFE_COOKIES,
        RESILIENCE_SESSION_SCHEMA={"uid": int},
        RESILIENCE_SESSION_IDLE_TIMEOUT=3600,
        RESILIENCE_SESSION_ABSOLUTE_TIMEOUT=12 * 3600,
        RATELIMIT_ENABLED=False,  # bench.peers measures limits
    )
    resilience = Resilience(app)
    resilience.current_user_loader(lambda: session.get("uid"))
    resilience.permission_loader(lambda user: {"documents:read", "documents:write"})

    @app.get("/docs")
    @permission_required("documents:read")
    def docs() -> str:
        return f"docs for {session.get('uid')}"

    return app


def session_cookie(app: Flask) -> str:
    """The cookie the app itself sets for a logged-in user."""

    @app.get("/bench-login")
    def bench_login() -> str:
        session["uid"] = 1
        return "in"

    response = app.test_client().get("/bench-login")
    return response.headers["Set-Cookie"].split(";", 1)[0]


def rows(scale: float = 1.0) -> list[Row]:
    bare, guarded, resigning = bare_app(), guarded_app(), guarded_app()
    # A client's cookie is at most a second old when it comes back within the
    # second: the session is checked but not re-signed. The clock stands still
    # at the second the cookie was made.
    cookie = session_cookie(guarded)
    made_at = float(int(time.time()))
    guard_state(guarded).time_source = lambda: made_at
    calls = {
        "bare": wsgi_caller(bare, "/docs", HTTP_COOKIE=session_cookie(bare)),
        "guarded": wsgi_caller(guarded, "/docs", HTTP_COOKIE=cookie),
        # Every request comes a second or more after the last: re-signed each time.
        "resigned": wsgi_caller(resigning, "/docs", HTTP_COOKIE=session_cookie(resigning)),
    }
    time.sleep(1.1)
    for call in calls.values():
        call()  # warm up
    seconds = compare(calls, repeat=REPEAT, rounds=ROUNDS, scale=scale)
    checked = seconds["guarded"] / seconds["bare"]
    resigned = seconds["resigned"] / seconds["bare"]
    return [
        Row("session view, bare Flask", seconds["bare"] * 1e6, "us", "-", True),
        Row("session view, guarded", seconds["guarded"] * 1e6, "us", "-", True),
        Row(
            "guarded / bare (schema, timeouts, permission)", checked, "x", "<= 1.5x", checked <= 1.5
        ),
        Row(
            "guarded / bare, cookie re-signed each request",
            resigned,
            "x",
            "<= 2.2x",
            resigned <= 2.2,
        ),
    ]
