"""The app the interruption tests serve with gunicorn: views that overrun a 1 s deadline.

``INTERRUPT_TEST_DATABASE`` is a PostgreSQL URL; the views note what their
``finally`` blocks saw in the file ``INTERRUPT_TEST_NOTES``.
"""

from __future__ import annotations

import os
import socket
import time

import sqlalchemy as sa
from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy

from flask_resilience import Resilience


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=os.environ["INTERRUPT_TEST_DATABASE"],
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0},
        RESILIENCE_REQUEST_TIMEOUT=1,
        RESILIENCE_INTERRUPT_ON_DEADLINE=True,
        RESILIENCE_MONITOR_ENABLED=False,
        SECRET_KEY="an-interruption-test-key-of-enough-length",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    db = SQLAlchemy(app)
    notes = os.environ["INTERRUPT_TEST_NOTES"]

    def note(what: str) -> None:
        with open(notes, "a") as file:
            file.write(f"{os.getpid()} {what}\n")

    @app.get("/sleep")
    def sleep() -> str:
        try:
            time.sleep(10)
        finally:
            note("sleep finally")
        return "woke"

    @app.get("/silent-socket")
    def silent_socket() -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        reader = socket.create_connection(listener.getsockname())
        try:
            reader.recv(1)  # nobody ever writes: no timeout, it would wait for ever
        finally:
            reader.close()
            listener.close()
            note("socket finally")
        return "read"

    @app.get("/spin")
    def spin() -> str:
        total = 0
        try:
            while True:
                total += 1
        finally:
            note("spin finally")

    @app.get("/held-connection")
    def held_connection() -> str:
        # The view keeps a transaction open with a write in it, then overruns in Python.
        db.session.execute(sa.text("CREATE TEMP TABLE IF NOT EXISTS dirty (n int)"))
        db.session.execute(sa.text("INSERT INTO dirty VALUES (1)"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # Python work: interruptible in any worker
            pass
        return "never"

    @app.get("/clean")
    def clean() -> str:
        # A connection returned dirty would still hold the temp table and its row.
        exists = db.session.execute(sa.text("SELECT to_regclass('pg_temp.dirty') IS NOT NULL"))
        return "dirty" if exists.scalar() else "clean"

    @app.get("/slow-teardown")
    def slow_teardown() -> str:
        return "answered in time"

    @app.teardown_request
    def overrun_after_the_answer(_error: BaseException | None) -> None:
        # The view has answered; the work after it (a rollback over a slow network,
        # say) overruns the deadline in Python, where any worker can interrupt it.
        # Once: the 504's own request context has its teardowns too.
        if request.path == "/slow-teardown" and "overran" not in request.environ:
            request.environ["overran"] = True
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pass

    @app.get("/pid")
    def pid() -> str:
        return str(os.getpid())

    Resilience(app, db=db)
    return app
