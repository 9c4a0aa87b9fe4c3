"""The benchmark table: one row per measured figure, with its target."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    name: str
    figure: float
    unit: str
    target: str
    met: bool


def scaled(count: int, scale: float, *, minimum: int = 1) -> int:
    """``count`` rounds or repeats of a full run, cut down by ``scale`` (a smoke run's < 1)."""
    return max(minimum, round(count * scale))


def compare(
    calls: dict[str, Callable[[], object]], *, repeat: int, rounds: int, scale: float = 1.0
) -> dict[str, float]:
    """Median seconds per call of each of ``calls``, their rounds interleaved.

    Interleaving makes a burst of load on the machine hit every contender alike,
    and CPU time of this thread, not wall time, leaves out the time other
    processes held the core: ratios hold even on a busy machine. ``scale`` cuts
    ``repeat`` and ``rounds`` down for a smoke run, keeping three rounds at least
    so that the median still drops an outlier.
    """
    repeat, rounds = scaled(repeat, scale), scaled(rounds, scale, minimum=3)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, work in calls.items():
            start = time.thread_time()
            for _ in range(repeat):
                work()
            samples[name].append((time.thread_time() - start) / repeat)
    return {name: statistics.median(values) for name, values in samples.items()}


def render(rows: list[Row]) -> str:
    width = max(len(row.name) for row in rows)
    lines = [f"{'benchmark':<{width}}  {'figure':>12}  {'target':<16}  met", "-" * (width + 40)]
    for row in rows:
        figure = f"{row.figure:,.2f} {row.unit}"
        lines.append(
            f"{row.name:<{width}}  {figure:>12}  {row.target:<16}  {'yes' if row.met else 'NO'}"
        )
    return "\n".join(lines)
