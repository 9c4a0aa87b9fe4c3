"""``make bench``: every benchmark row in one table, measured in one run.

``python -m bench`` prints the table and writes it to docs/benchmarks.md;
``python -m bench --smoke`` runs every benchmark with far fewer rounds, to check
that they all work, and writes a page only when given ``--output``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from bench import report
from bench.table import Row, render

# Each module has rows(scale) -> list[Row]; the table keeps this order.
MODULES = (
    "bench.peers",
    "bench.parts",
    "bench.breakers",
    "bench.outbound",
    "bench.uploads",
    "bench.guards",
    "bench.health",
    "bench.deadlines",
)
PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SMOKE_SCALE = 0.05
"""The share of a full run's rounds and repeats that a smoke run makes."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="far fewer rounds: checks that every benchmark runs; writes no page by default",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the page (default: docs/benchmarks.md, none with --smoke)",
    )
    return parser.parse_args(argv)


def measure(scale: float) -> list[Row]:
    rows: list[Row] = []
    for name in MODULES:
        rows.extend(importlib.import_module(name).rows(scale))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The apps measured log what their monitors see of a machine the benchmark keeps
    # busy on purpose; the table is what this run prints.
    logging.disable(logging.WARNING)
    load_at_start = report.load_average()
    rows = measure(SMOKE_SCALE if args.smoke else 1.0)
    print(f"Machine: {report.machine()}")
    print(f"Load average when the run began: {load_at_start}")
    print(f"Versions: {report.versions()}")
    print(render(rows))
    output = args.output or (None if args.smoke else PAGE)
    if output is not None:
        output.write_text(report.page(rows, load_at_start=load_at_start), encoding="utf-8")
        print(f"Wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
