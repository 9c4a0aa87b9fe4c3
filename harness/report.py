"""Tables and the pages under ``docs/`` that the harnesses write."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import psutil

from harness.stack import ROOT

DOCS = ROOT / "docs"
PACKAGES = ("flask-resilience", "Flask", "Werkzeug", "Flask-Limiter", "gunicorn", "locust")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{cpu_model()}, {psutil.cpu_count()} cores, {memory:.0f} GiB, "
        f"{platform.system()} {platform.release()}"
    )


def versions() -> str:
    return ", ".join(
        [f"Python {platform.python_version()}", *(f"{name} {version(name)}" for name in PACKAGES)]
    )


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table, which reads as plain text in a terminal too."""
    cells = [list(map(str, header)), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]

    def line(row: list[str]) -> str:
        return (
            "| "
            + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            + " |"
        )

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(cells[0]), rule, *map(line, cells[1:])])


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def write_page(name: str, title: str, body: str, command: str, folder: Path = DOCS) -> Path:
    """Write ``<folder>/<name>.md``: the figures of a run, when and where they were measured."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"# {title}\n\n"
        f"Measured {stamp} with `{command}` on {machine()}.\n"
        f"Versions: {versions()}.\n\n"
    )
    path.write_text(header + body.rstrip() + "\n")
    return path
