"""What the gunicorn processes hold over a run: memory, threads and file descriptors.

A sync worker holds the socket of the client it is answering, and only while it
answers, so its descriptor count is one higher whenever a sample lands on a
request in flight. Each sample counts those sockets apart, which tells that
jitter from a descriptor that is never given back.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

#: Attempts at a sample whose descriptors did not change while it was taken.
SNAPSHOT_ATTEMPTS = 5


@dataclass(frozen=True)
class Sample:
    seconds: float
    """Since the start of the run."""
    pid: int
    rss: int
    threads: int
    fds: int
    client_sockets: int
    """Accepted connections of clients on the app's port: requests in flight."""

    @property
    def other_fds(self) -> int:
        return self.fds - self.client_sockets


def sample(process: psutil.Process, seconds: float, port: int) -> Sample:
    """One process's memory, threads and descriptors; raises psutil.Error if it is gone.

    The descriptors are counted before and after the sockets are listed, and
    the sample is taken again when a request came or went in between, so the
    client sockets are those of the same moment as the count.
    """
    for _ in range(SNAPSHOT_ATTEMPTS):
        fds = process.num_fds()
        clients = client_sockets(process, port)
        rss = process.memory_info().rss
        threads = process.num_threads()
        if process.num_fds() == fds:
            break
    return Sample(seconds, process.pid, rss, threads, fds, clients)


def client_sockets(process: psutil.Process, port: int) -> int:
    # net_connections() from psutil 6.0; connections() in the older ones pyproject.toml allows.
    connections = getattr(process, "net_connections", None) or process.connections
    return sum(
        1
        for connection in connections(kind="tcp")
        if connection.laddr and connection.laddr.port == port and connection.raddr
    )


@dataclass(frozen=True)
class Series:
    """The samples of one process after the warm-up."""

    pid: int
    samples: Sequence[Sample]

    @property
    def first_rss(self) -> int:
        return self.samples[0].rss if self.samples else 0

    @property
    def last_rss(self) -> int:
        return self.samples[-1].rss if self.samples else 0

    def rss_growth(self) -> float:
        """Percent from the first sample to the last (NaN, never met, without two)."""
        if len(self.samples) < 2:
            return math.nan
        return 100 * (self.last_rss - self.first_rss) / self.first_rss

    def rss_trend(self) -> float:
        """Percent growth of the least-squares line across the window.

        One sample caught in the middle of a large request moves the first and
        last samples but barely the line through all of them.
        """
        if len(self.samples) < 2:
            return math.nan
        times = [item.seconds for item in self.samples]
        values = [float(item.rss) for item in self.samples]
        slope, intercept = statistics.linear_regression(times, values)
        start = intercept + slope * times[0]
        return 100 * slope * (times[-1] - times[0]) / start

    def spread(self, measure: str) -> int:
        """Max minus min of ``threads``, ``fds`` or ``other_fds``."""
        values = [getattr(item, measure) for item in self.samples]
        return int(max(values) - min(values)) if values else 0

    def span(self, measure: str) -> str:
        values = [getattr(item, measure) for item in self.samples]
        if not values:
            return "—"
        low, high = min(values), max(values)
        return str(low) if low == high else f"{low} to {high}"
