"""Tables and the pages under ``docs/`` that the harnesses write."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from bench import report as bench_report
from bench.report import machine
from harness.stack import ROOT

DOCS = ROOT / "docs"
# Distribution names, as pip knows them, and how the pages name them.
PACKAGES = {
    "flask-resilience": "flask_resilience",
    "Flask": "Flask",
    "Werkzeug": "Werkzeug",
    "Flask-Limiter": "Flask-Limiter",
    "gunicorn": "gunicorn",
    "locust": "locust",
}
__all__ = ["machine", "table", "verdict", "versions", "write_page"]


def versions() -> str:
    return bench_report.versions(PACKAGES)


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
