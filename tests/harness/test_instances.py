"""Two instances of the example app sharing Redis: the limit, a breaker and the monitor's switch."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_what_one_instance_decides_holds_on_the_other(
    tmp_path: Path, harness_smoke: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    run = harness_smoke("instances")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output

    page = (tmp_path / "instances.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "rate limit 100/min for one client, 150 requests alternating",
        "breaker opened on the first instance, on the second",
        "monitor stop through the first instance",
        "monitor start through the first instance",
    ]
    assert all(row.rstrip(" |").endswith("met") for row in rows[1:]), output
    assert "100 served (50 + 50), 50 answered 429" in page
