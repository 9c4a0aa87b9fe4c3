"""The chaos harness in smoke mode: real faults under load, a page, a plot and an exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import postgres_unavailable_reason, redis_unavailable_reason, skip_or_fail

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def table_rows(page: str) -> dict[str, list[str]]:
    """The results table of a chaos page: each fault's cells, by the fault's name."""
    rows = {}
    for line in page.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0].isdigit():
            rows[cells[1]] = cells
    return rows


def counted(text: str) -> dict[str, int]:
    """``200 5, 503 34`` as ``{"200": 5, "503": 34}``."""
    pairs = (pair.rsplit(" ", 1) for pair in text.split(", ") if pair)
    return {status: int(count) for status, count in pairs}


def test_the_smoke_run_meets_its_targets_and_writes_its_page_and_plot(tmp_path: Path) -> None:
    for reason in (postgres_unavailable_reason(), redis_unavailable_reason()):
        if reason is not None:
            skip_or_fail(reason)
    run = subprocess.run(
        [sys.executable, "-m", "harness.chaos", "--smoke", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output

    rows = table_rows((tmp_path / "chaos.md").read_text())
    assert list(rows) == ["PostgreSQL stopped 6 s", "Redis stopped 4 s", "worker killed (SIGKILL)"]
    for name, cells in rows.items():
        assert cells[4] == "0 met", (name, output)  # no 500
        assert not cells[8].startswith("NO"), (name, output)  # health told the truth
    # The database outage was seen: 503 problems to the users, readiness 503.
    outage = rows["PostgreSQL stopped 6 s"]
    assert counted(outage[3]).get("503", 0) > 0, output
    ready = outage[7].split("; ")[0].removeprefix("ready ")
    assert counted(ready).get("503", 0) > 0, output
    assert "503" not in counted(rows["Redis stopped 4 s"][3]), output  # rate limits fail open

    plot = (tmp_path / "chaos.png").read_bytes()
    assert plot.startswith(b"\x89PNG\r\n\x1a\n") and len(plot) > 20_000
