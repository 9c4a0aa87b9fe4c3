"""The load test's smoke mode: a real stack, a real locust run, the page written."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path


def test_smoke_run_serves_every_request_and_writes_the_page(
    tmp_path: Path, harness_smoke: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    run = harness_smoke("loadtest")
    assert run.returncode == 0, run.stdout + run.stderr

    page = (tmp_path / "load.md").read_text()
    assert "cores" in page
    # A section for each worker class, in the order they ran: sync, then gthread.
    headings = re.findall(r"^## (.+)$", page, re.MULTILINE)
    assert headings == ["4 sync workers", "4 gthread workers of 4 threads"]
    sections = re.split(r"^## .+$", page, flags=re.MULTILINE)[1:]
    for heading, section in zip(headings, sections, strict=True):
        [row] = re.findall(r"^\| 10 +\| (\d+) +\| [\d.]+ +\| (\w+) ", section, re.MULTILINE)
        requests, failures = row
        assert int(requests) > 20, heading
        assert failures == "none", heading
        assert re.search(r"no 5xx at 10 users +\| 0 5xx +\| met", section), heading
