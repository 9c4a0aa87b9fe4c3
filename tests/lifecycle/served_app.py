"""A small app served by real servers (gunicorn, Werkzeug) in the lifecycle tests.

``LIFECYCLE_CLEANUP_FILE`` names a file each cleanup appends a line to, so that
a test can count how often cleanups ran in the server's processes;
``LIFECYCLE_CLEANUP_SECONDS`` makes each cleanup take that long.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from flask import Flask, Response, current_app, jsonify, request

from flask_resilience import Resilience


def create_app() -> Flask:
    logging.basicConfig(level=logging.INFO)  # the extension's records, in the server's log
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="a-test-secret-key-long-enough-to-pass-checks",
        RATELIMIT_DEFAULT="1000 per minute",
        RESILIENCE_SHUTDOWN_TIMEOUT=float(os.environ.get("LIFECYCLE_SHUTDOWN_TIMEOUT", "10")),
    )
    resilience = Resilience(app)
    cleanup_file = os.environ["LIFECYCLE_CLEANUP_FILE"]
    cleanup_seconds = float(os.environ.get("LIFECYCLE_CLEANUP_SECONDS", "0"))

    @resilience.register_cleanup(timeout=2 + cleanup_seconds)
    def record_cleanup() -> None:
        time.sleep(cleanup_seconds)
        with open(cleanup_file, "a") as file:
            file.write(f"cleanup {os.getpid()}\n")

    @app.get("/slow")
    def slow() -> Response:
        time.sleep(float(request.args.get("seconds", "2")))
        return jsonify(draining=current_app.extensions["resilience"].draining.is_set())

    @app.get("/health/ready")
    def ready() -> tuple[Response, int]:
        draining = current_app.extensions["resilience"].draining.is_set()
        return jsonify(draining=draining), 503 if draining else 200

    @app.get("/health/live")
    def live() -> Response:
        return jsonify(status="pass")

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
