"""One app process of the shared retry budget test.

``python -m tests.breakers.budget_worker REDIS_URL UPSTREAM succeed|fail CALLS``
makes CALLS calls to the upstream (``/ok`` or ``/fail``) through
``retry_on_failure`` with the budget ``shared-upstream`` kept in REDIS_URL. Once
set up it prints ``ready`` and calls when a line comes on its standard input.
"""

from __future__ import annotations

import contextlib
import sys
import time

import requests
from flask import Flask

from flask_resilience import Resilience, retry_on_failure


def main(redis_url: str, upstream: str, role: str, calls: int) -> None:
    app = Flask("budget-worker")
    app.config.update(
        RESILIENCE_CIRCUIT_STORAGE_URI=redis_url,
        RESILIENCE_RETRY_BUDGET=0.2,
        RESILIENCE_RETRY_BUDGET_FLOOR=0,
        RESILIENCE_MONITOR_ENABLED=False,
        RESILIENCE_HANDLE_SIGTERM=False,
    )
    Resilience(app)
    path = "/ok" if role == "succeed" else "/fail"

    @retry_on_failure(max_retries=1, delay=0, name="shared-upstream")
    def fetch() -> None:
        requests.get(f"{upstream}{path}", timeout=5).raise_for_status()

    print("ready", flush=True)
    sys.stdin.readline()
    with app.app_context():
        for _ in range(calls):
            with contextlib.suppress(requests.HTTPError):
                fetch()
        if role == "succeed":
            # The calls of a second go to Redis with the first call of the next.
            time.sleep(1.05 - time.time() % 1)
            fetch()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
