"""A worker of its own for the dashboard tests: a separate process that builds the test
app on a given instance folder, serves a few requests, forces the breaker open, writes
its dashboard snapshot as its monitor would and then waits (``stay``), exits as a
worker does (``exit``) or dies at once (``kill``: SIGKILL, as a worker killed for its
timeout, leaving its snapshot behind).

``python -m tests.health.snapshot_writer INSTANCE_FOLDER stay|exit|kill``
"""

from __future__ import annotations

import os
import signal
import sys

from flask_resilience.circuit.registry import get_breaker
from flask_resilience.health import health_state, write_worker_snapshot
from flask_resilience.state import get_state
from tests.health.apps import BREAKER, create_app

REQUESTS = 7


def main(instance: str, mode: str) -> None:
    app = create_app(instance_path=instance, dashboard_parts=True)
    client = app.test_client()
    for _ in range(REQUESTS):
        client.get("/charge")
    with app.app_context():
        get_breaker(BREAKER).force_open()
    write_worker_snapshot(app, get_state(app), health_state(app))
    print(os.getpid(), flush=True)
    if mode == "stay":
        sys.stdin.read()  # until the test closes the pipe
    elif mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
