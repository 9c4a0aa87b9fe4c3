"""The chaos harness in smoke mode: real faults under load, a page, a plot and an exit status."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import chaos

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def table_rows(page: str) -> dict[str, list[str]]:
    """The results table of a chaos page: each fault's cells, by the fault's name."""
    rows = {}
    for line in page.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 11 and cells[0].isdigit():
            rows[cells[1]] = cells
    return rows


def counted(text: str) -> dict[str, int]:
    """``200 5, 503 34`` as ``{"200": 5, "503": 34}``."""
    pairs = (pair.rsplit(" ", 1) for pair in text.split(", ") if pair)
    return {status: int(count) for status, count in pairs}


def ready_polls(cells: list[str]) -> str:
    """The readiness polls of a row's health cell: ``200 5, 503 3``."""
    return cells[8].split("; ")[0].removeprefix("ready ")


def test_the_smoke_run_meets_its_targets_and_writes_its_page_and_plot(
    tmp_path: Path, harness_smoke: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    # gthread workers: the sync ones are what the load test's smoke run serves with too.
    run = harness_smoke("chaos", "--worker-class", "gthread")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output

    page = (tmp_path / "chaos.md").read_text()
    assert "## Results: 4 gthread workers of 4 threads" in page
    rows = table_rows(page)
    assert list(rows) == [
        "PostgreSQL stopped 6 s",
        "Redis stopped 4 s",
        "worker killed (SIGKILL)",
    ]
    for name, cells in rows.items():
        assert cells[4] == "0 met", (name, output)  # no 500
        assert not cells[9].startswith("NO"), (name, output)  # health told the truth
    # The database outage was seen: 503 problems to the users, readiness 503.
    outage = rows["PostgreSQL stopped 6 s"]
    assert counted(outage[3]).get("503", 0) > 0, output
    assert counted(ready_polls(outage)).get("503", 0) > 0, output
    assert "503" not in counted(rows["Redis stopped 4 s"][3]), output  # rate limits fail open

    plot = (tmp_path / "chaos-gthread.png").read_bytes()
    assert plot.startswith(b"\x89PNG\r\n\x1a\n") and len(plot) > 20_000


def test_where_no_network_namespace_can_be_made_the_network_faults_are_skipped_saying_why() -> None:
    reason = "making a network namespace needs root"
    plan, message = chaos.network_faults_skipped(chaos.FULL, reason)
    assert [fault.label for fault in chaos.FULL.faults if fault.network] == [
        "network delayed",
        "network lossy",
    ]
    assert plan.faults == tuple(fault for fault in chaos.FULL.faults if not fault.network)
    assert message == f"The network faults are skipped: {reason}."
    assert chaos.network_text([], message)[0].startswith(message)  # on the page
    assert chaos.network_faults_skipped(chaos.SMOKE, None) == (chaos.SMOKE, "")
