"""Crashes and outages are logged where the app's own records go, whatever its logging set-up.

Each case runs in a subprocess of its own, since logging is process-wide: an app
with no logging set-up at all (Flask's default handler), one that called
``logging.basicConfig``, and one with a file handler on ``app.logger``. The same
app runs without and with the extension, and the crash's traceback must appear
exactly where, and as often as, Flask alone put it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP = textwrap.dedent(
    """
    import logging
    import sys

    import sqlalchemy as sa
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    setup, mode, log_file, database_url = sys.argv[1:5]
    if setup == "basicConfig":
        logging.basicConfig(format="%(levelname)s %(name)s %(message)s")
    app = Flask("shop")
    app.config.update(SQLALCHEMY_DATABASE_URI=database_url, PROPAGATE_EXCEPTIONS=False)
    if setup == "file":
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        app.logger.addHandler(handler)
    db = SQLAlchemy(app)

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom-marker")

    @app.get("/orders")
    def orders():
        return str(db.session.execute(sa.text("SELECT 1")).scalar())

    if mode == "resilience":
        from flask_resilience import Resilience

        Resilience(app, db=db)
    client = app.test_client()
    print(client.get("/boom").status_code, client.get("/orders").status_code)
    """
)


def refused_postgres_url() -> str:
    """A PostgreSQL URL on a loopback port nothing listens on: every connect is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+psycopg://app@127.0.0.1:{port}/shop"


def run_app(tmp_path: Path, setup: str, mode: str) -> tuple[str, str, str]:
    """(status codes printed, stderr, log file) of one run of the app."""
    log_file = tmp_path / f"{setup}-{mode}.log"
    log_file.touch()
    finished = subprocess.run(
        [sys.executable, "-c", APP, setup, mode, str(log_file), refused_postgres_url()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return finished.stdout.strip(), finished.stderr, log_file.read_text()


@pytest.mark.parametrize("setup", ["none", "basicConfig", "file"])
def test_the_crash_traceback_appears_once_where_flask_puts_it(tmp_path: Path, setup: str) -> None:
    plain_codes, plain_stderr, plain_file = run_app(tmp_path, setup, "plain")
    codes, stderr, file = run_app(tmp_path, setup, "resilience")
    assert plain_codes == "500 500"
    assert codes == "500 503"
    for where, plain, with_extension in (
        ("stderr", plain_stderr, stderr),
        ("file", plain_file, file),
    ):
        assert with_extension.count("RuntimeError: boom-marker") == plain.count(
            "RuntimeError: boom-marker"
        ), where
        assert with_extension.count("Exception on /boom [GET]") == plain.count(
            "Exception on /boom [GET]"
        ), where
    where_flask_logs = file if setup == "file" else stderr
    assert where_flask_logs.count("RuntimeError: boom-marker") == 1


@pytest.mark.parametrize("setup", ["none", "basicConfig", "file"])
def test_an_outage_is_one_warning_line_where_the_apps_records_go(
    tmp_path: Path, setup: str
) -> None:
    _, stderr, file = run_app(tmp_path, setup, "resilience")
    for destination in (stderr, file):
        # Wherever app.logger's own record of the crash went, and only there.
        crash_records = destination.count("Exception on /boom [GET]")
        outage_lines = [line for line in destination.splitlines() if "/orders -> 503" in line]
        assert len(outage_lines) == crash_records
        assert all("OperationalError" in line for line in outage_lines)
    assert "/orders -> 503" in (file if setup == "file" else stderr)
    # One line: the only traceback is the crash's, none for the refused connection.
    tracebacks = stderr.count("Traceback (most recent call last)")
    assert tracebacks + file.count("Traceback (most recent call last)") == stderr.count(
        "Exception on /boom"
    ) + file.count("Exception on /boom")
