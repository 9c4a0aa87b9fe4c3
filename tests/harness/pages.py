"""Reading the pages the harnesses write."""

from __future__ import annotations


def table_rows(page: str, first_header: str) -> dict[str, list[str]]:
    """The rows of the markdown table whose first column is ``first_header``, by first cell."""
    lines = page.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} "))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows
