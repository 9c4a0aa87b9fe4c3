"""The soak harness's smoke run: the example app under gunicorn, real load, its page and plot."""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.stack import WORKERS
from tests.harness.pages import table_rows

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_smoke_run_samples_every_worker_and_writes_the_page_and_plot(
    tmp_path: Path, harness_smoke: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    result = harness_smoke("soak")
    assert result.returncode == 0, result.stdout + result.stderr

    page = (tmp_path / "soak.md").read_text()
    assert "`python -m harness.soak --smoke`" in page
    assert "--max-requests 0" in page
    checks = table_rows(page, "Measure")
    for measure in (
        "Worker RSS growth, last vs first sample (max of 4)",
        "Worker RSS growth, least-squares line over the window (max of 4)",
        "Master RSS growth, last vs first / line",
        "Threads, max - min (worst process)",
        "File descriptors, max - min (worst process)",
        "File descriptors other than client connections, max - min",
        "Latency after warm-up, p50 / p95",
    ):
        figure, _, verdict = checks[measure]
        assert re.search(r"\d", figure), (measure, figure)
        assert verdict.startswith("not judged"), (measure, verdict)
    assert checks["Failures by status"][2] == "met"
    assert checks["Samples of every process at every tick, none replaced"][2] == "met"
    requests = int(checks["Requests"][0].split()[0])
    assert requests > 100

    ticks = int(re.search(r"(\d+) ticks\.", page)[1])  # type: ignore[index]
    assert ticks >= 15
    processes = table_rows(page, "Process")
    assert list(processes) == ["master", *(f"worker {n}" for n in range(1, WORKERS + 1))]
    pids = {row[0] for row in processes.values()}
    assert len(pids) == WORKERS + 1
    for name, row in processes.items():
        assert int(row[1]) == ticks, f"{name} was sampled {row[1]} times of {ticks}"

    assert "![" in page and "(soak.png)" in page
    width, height = png_size(tmp_path / "soak.png")
    assert width >= 800 and height >= 800
