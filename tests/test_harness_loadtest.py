"""The load test's smoke mode: a real stack, a real locust run, the page written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.servers import postgres_unavailable_reason, redis_unavailable_reason, skip_or_fail

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_run_serves_every_request_and_writes_the_page(tmp_path: Path) -> None:
    for reason in (postgres_unavailable_reason(), redis_unavailable_reason()):
        if reason:
            skip_or_fail(reason)
    run = subprocess.run(
        [sys.executable, "-m", "harness.loadtest", "--smoke", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr

    page = (tmp_path / "load.md").read_text()
    assert "cores" in page
    [row] = re.findall(r"^\| 10 +\| (\d+) +\| [\d.]+ +\| (\w+) ", page, re.MULTILINE)
    requests, failures = row
    assert int(requests) > 20
    assert failures == "none"
    assert re.search(r"no 5xx at 10 users +\| 0 5xx +\| met", page)
