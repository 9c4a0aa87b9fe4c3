"""``python -m bench --smoke``: every benchmark runs, each row of the table has a
figure, every target is evaluated, and the page holds the table and the machine.

A smoke run's figures are too noisy to hold to the targets: only that each target
was evaluated is checked, not that it was met.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from tests.support.paths import ROOT

# Every row of the table, with its target ("-" for none).
EXPECTED = {
    "hello world, bare Flask": "-",
    "hello world, flask_resilience core: health, limits off": "-",
    "hello world, flask_resilience defaults, limits off": "-",
    "hello world, flask_resilience + session checks, limits off": "-",
    "hello world, flask_resilience everything on, limits in memory": "-",
    "hello world, Flask-Limiter alone": "-",
    "hello world, prometheus-flask-exporter alone": "-",
    "hello world, Flask-Limiter + prometheus-flask-exporter": "-",
    "core / bare: errors, request ids, log context": "-",
    "defaults without rate limiting / bare": "<= 1.10x",
    "everything on / bare": "-",
    "Flask-Limiter alone / bare": "-",
    "prometheus-flask-exporter alone / bare": "-",
    "Flask-Limiter + exporter / bare": "-",
    "everything on / Flask-Limiter alone": "-",
    "everything on / Flask-Limiter + exporter": "<= 0.9x",
    "circuit_breaker (memory) overhead per call": "<= 3 us",
    "bulkhead overhead per call": "-",
    "retry_on_failure (no failure) overhead per call": "<= 3 us",
    "outbound session overhead per request vs plain requests.Session": "<= 5%",
    "validate a 1 MB upload": "-",
    "validate a 500 MB upload": "-",
    "validation time, 500 MB / 1 MB": "<= 2x",
    "peak memory growth validating 500 MB": "<= 10 MB",
    "session view, bare Flask": "-",
    "session view, guarded": "-",
    "guarded / bare (schema, timeouts, permission)": "<= 1.5x",
    "guarded / bare, cookie re-signed each request": "<= 2.2x",
    "/health/live req/s vs bare Flask hello": ">= 0.9",
    "health's request timing, cost per request": "< 10 us",
    "/health/ready, one check hanging (worst)": "<= 1.1 s",
    "monitor CPU at a 1 s interval": "< 1 %",
    "hello world, every part off": "-",
    "part: request ids and log context, cost per request": "-",
    "part: health's request timing, cost per request": "-",
    "part: deadlines (no database), cost per request": "-",
    "part: session guard, cost per request": "-",
    "part: session checks (schema, timeouts), cost per request": "-",
    "part: rate limits (memory), cost per request": "-",
    "part: load shedding (stamped requests), cost per request": "-",
    "part: problem handlers (a 404), cost per request": "-",
    "SELECT 1 on PostgreSQL, no deadline": "-",
    "statement deadline, cost per statement (PostgreSQL)": "report",
}
# Differences of two medians: over a smoke run's few rounds noise can bring them to
# zero or below, so they need only be finite.
DIFFERENCES = {
    "circuit_breaker (memory) overhead per call",
    "bulkhead overhead per call",
    "retry_on_failure (no failure) overhead per call",
    "outbound session overhead per request vs plain requests.Session",
    "health's request timing, cost per request",
    "statement deadline, cost per statement (PostgreSQL)",  # floored at 0
} | {name for name in EXPECTED if name.startswith("part: ")}  # floored at 0 too
# What follows a row's name: figure, unit, target, met.
CELLS = re.compile(
    r"(?P<figure>-?[\d,]+\.\d+) (?P<unit>.+?)\s{2,}(?P<target>\S.*?)\s{2,}(?P<met>yes|NO)"
)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(what ``python -m bench --smoke`` printed, the page it wrote)."""
    page = tmp_path_factory.mktemp("bench") / "benchmarks.md"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(page)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout, page.read_text(encoding="utf-8")


def table_rows(output: str) -> dict[str, re.Match[str]]:
    """The cells of each expected row of the printed table, by row name."""
    found: dict[str, re.Match[str]] = {}
    for line in output.splitlines():
        for name in EXPECTED:
            if line.startswith(name + "  "):
                cells = CELLS.fullmatch(line[len(name) :].strip())
                assert cells, f"row {name!r} does not parse: {line!r}"
                assert name not in found, f"row {name!r} appears twice"
                found[name] = cells
    return found


def test_every_row_has_a_finite_figure(smoke_run: tuple[str, str]) -> None:
    output, _ = smoke_run
    rows = table_rows(output)
    assert set(rows) == set(EXPECTED)
    for name, cells in rows.items():
        figure = float(cells["figure"].replace(",", ""))
        assert math.isfinite(figure), name
        if name not in DIFFERENCES:
            assert figure > 0, f"{name}: {figure}"


def test_every_target_is_evaluated(smoke_run: tuple[str, str]) -> None:
    output, _ = smoke_run
    rows = table_rows(output)
    for name, target in EXPECTED.items():
        assert rows[name]["target"] == target, name
        if target == "-":
            assert rows[name]["met"] == "yes", f"{name} has no target, so nothing to miss"


def test_no_row_but_the_expected_ones(smoke_run: tuple[str, str]) -> None:
    """A new benchmark row comes with its place in EXPECTED."""
    output, _ = smoke_run
    table = output[output.index("benchmark ") :].splitlines()
    body = [line for line in table[2:] if line.strip() and not line.startswith("Wrote ")]
    assert len(body) == len(EXPECTED)


def test_the_page_holds_the_table_and_the_machine(smoke_run: tuple[str, str]) -> None:
    output, page = smoke_run
    table = output[output.index("benchmark ") :].split("\nWrote ", 1)[0].rstrip()
    assert f"```text\n{table}\n```" in page
    machine = re.search(r"^- Machine: (.+)$", page, re.MULTILINE)
    assert machine, page
    assert re.search(r"\b\d+ cores, \d+\.\d GiB\b", machine.group(1)), machine.group(1)
    assert f"Machine: {machine.group(1)}" in output
    assert re.search(r"^- Date: \d{4}-\d\d-\d\d \d\d:\d\d UTC$", page, re.MULTILINE)
    assert re.search(r"^- Load average when the run began: \d+\.\d\d, ", page, re.MULTILINE)
    versions = re.search(r"^- Versions: (.+)$", page, re.MULTILINE)
    assert versions, page
    for name in ("Python", "Flask", "Flask-Limiter", "prometheus-flask-exporter"):
        assert re.search(rf"(^|, ){re.escape(name)} \d", versions.group(1)), name
    assert "make bench" in page
