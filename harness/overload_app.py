"""The app that ``harness.overload`` serves: one view that reads PostgreSQL and does a little work.

``OVERLOAD_MODE=plain`` builds it with Flask and Flask-SQLAlchemy alone;
``OVERLOAD_MODE=resilient`` builds the same app with the extension set up as in
production: load shedding on the proxy's ``X-Request-Start`` stamp, a deadline
on every request's database work and rate limits per client in Redis. The
harness passes the database, the table, Redis and the settings in the
environment (see :func:`harness.overload.app_environment`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text

CATEGORIES = 50
"""The table's rows fall into this many categories; each request reads one."""
HASH_ROUNDS = 40
"""Rounds of hashing the rows: a few milliseconds of Python, like rendering a page."""
QUERY_WAIT = 0.025
"""Seconds the statement waits in the server (``pg_sleep``), as a query doing real I/O
does: the workers, not the machine's cores, bound what the app serves, as they do in
most apps on sync workers. Without it, on a small machine, the load generator and the
connections themselves would take the cores and the comparison would say little."""


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["OVERLOAD_DATABASE_URL"]
    app.config["SECRET_KEY"] = os.environ["OVERLOAD_SECRET_KEY"]
    table = os.environ["OVERLOAD_TABLE"]
    if not table.isidentifier():
        raise RuntimeError(f"OVERLOAD_TABLE must be a plain identifier, not {table!r}")
    db = SQLAlchemy(app)
    query = text(
        f"SELECT id, title, score FROM {table}, pg_sleep({QUERY_WAIT})"
        " WHERE category = :category ORDER BY score DESC LIMIT 20"
    )

    @app.get("/work")
    def work() -> dict[str, object]:
        category = random.randrange(CATEGORIES)
        rows = [
            {"id": row.id, "title": row.title, "score": row.score}
            for row in db.session.execute(query, {"category": category})
        ]
        digest = hashlib.sha256()
        encoded = json.dumps(rows).encode()
        for _ in range(HASH_ROUNDS):
            digest.update(encoded)
        return {"category": category, "top": rows[:3], "digest": digest.hexdigest()}

    mode = os.environ.get("OVERLOAD_MODE", "plain")
    if mode == "resilient":
        from flask_resilience import Resilience

        app.config.update(
            RESILIENCE_MAX_QUEUE_TIME=float(os.environ["OVERLOAD_MAX_QUEUE_TIME"]),
            RESILIENCE_REQUEST_TIMEOUT=float(os.environ["OVERLOAD_REQUEST_TIMEOUT"]),
            RESILIENCE_TRUSTED_PROXIES=1,
            RATELIMIT_STORAGE_URI=os.environ["OVERLOAD_REDIS_URL"],
            RATELIMIT_KEY_PREFIX=table,
            RATELIMIT_APPLICATION=os.environ["OVERLOAD_RATE_LIMIT"],
        )
        Resilience(app, db=db)
    elif mode != "plain":
        raise RuntimeError(f"OVERLOAD_MODE must be 'plain' or 'resilient', not {mode!r}")
    return app
