"""``make bench``: every benchmark row in one table, measured in one run."""

from __future__ import annotations

import importlib
import platform
import sys

import psutil

from bench.table import Row, render

# Each module has rows() -> list[Row]; the table keeps this order.
MODULES = (
    "bench.peers",
    "bench.breakers",
    "bench.uploads",
    "bench.guards",
    "bench.health",
)


def main() -> int:
    rows: list[Row] = []
    for name in MODULES:
        rows.extend(importlib.import_module(name).rows())
    cores = psutil.cpu_count()
    memory_gib = psutil.virtual_memory().total / 2**30
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {cores} cores, "
        f"{memory_gib:.0f} GiB"
    )
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
