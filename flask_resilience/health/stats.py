"""Request statistics over sliding windows: rate, error rate and latency percentiles.

Recording runs on every request, so it does as little as it can: one lock, a few
integer operations on per-second buckets and an append to a bounded deque. The
sorting that percentiles need happens when somebody reads them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

WINDOWS = (60, 300)
"""The windows, in seconds, that detailed health reports."""

_SPAN = max(WINDOWS)
_LATENCY_SAMPLES = 4096


class RequestStats:
    """Counts and latencies of the requests a process served recently."""

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # One bucket per second of the longest window, reused as time goes round.
        self._second = [-1] * _SPAN
        self._count = [0] * _SPAN
        self._errors = [0] * _SPAN
        self._latencies: deque[tuple[float, float]] = deque(maxlen=_LATENCY_SAMPLES)
        self.total = 0
        self.total_errors = 0

    def record(self, duration: float, status: int, at: float | None = None) -> None:
        """Count one request that took ``duration`` seconds and answered ``status``.

        :param at: when it finished, on this object's clock; now by default.
        """
        now = self._clock() if at is None else at
        second = int(now)
        slot = second % _SPAN
        error = status >= 500
        with self._lock:
            if self._second[slot] != second:
                self._second[slot] = second
                self._count[slot] = 0
                self._errors[slot] = 0
            self._count[slot] += 1
            self.total += 1
            if error:
                self._errors[slot] += 1
                self.total_errors += 1
            self._latencies.append((now, duration))

    def record_many(self, batch: Iterable[Counted]) -> None:
        """Count a batch of finished requests under one lock."""
        with self._lock:
            for at, duration, status, _endpoint, _method in batch:
                second = int(at)
                slot = second % _SPAN
                if self._second[slot] != second:
                    if self._second[slot] > second:
                        continue  # older than the span the buckets keep
                    self._second[slot] = second
                    self._count[slot] = 0
                    self._errors[slot] = 0
                self._count[slot] += 1
                self.total += 1
                if status >= 500:
                    self._errors[slot] += 1
                    self.total_errors += 1
                self._latencies.append((at, duration))

    def window(self, seconds: int) -> dict[str, Any]:
        """Rate, error rate and latency percentiles over the last ``seconds``."""
        now = self._clock()
        oldest = int(now) - seconds
        with self._lock:
            count = errors = 0
            for slot in range(_SPAN):
                if self._second[slot] > oldest:
                    count += self._count[slot]
                    errors += self._errors[slot]
            durations = sorted(d for t, d in self._latencies if t > now - seconds)
        return {
            "window_seconds": seconds,
            "requests": count,
            "requests_per_second": round(count / seconds, 3),
            "errors": errors,
            "error_rate": round(100.0 * errors / count, 3) if count else 0.0,
            "latency_p50": _percentile(durations, 50),
            "latency_p95": _percentile(durations, 95),
            "latency_p99": _percentile(durations, 99),
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "total_errors": self.total_errors,
            "windows": {f"{seconds}s": self.window(seconds) for seconds in WINDOWS},
        }


def _percentile(ordered: list[float], percent: float) -> float | None:
    """Nearest-rank percentile of sorted values; ``None`` when there are none."""
    if not ordered:
        return None
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return round(ordered[rank - 1], 6)


Finished = tuple[float, float, str, "str | None", str]
"""(monotonic end, seconds, WSGI status line, endpoint, method) of one request."""

Counted = tuple[float, float, int, str, str]
"""(monotonic end, seconds, status, endpoint, method) of one request to count."""


class RequestLog:
    """Requests as they finish: one deque append on the request's path, counted later
    in batches.

    ``deque.append`` needs no lock of ours, and a batch takes the statistics' and
    the metrics' locks once per endpoint rather than once per request. Whoever
    reads the numbers (detailed health, a scrape, the monitor every interval)
    calls :meth:`drain` first; past ``limit`` waiting entries the request that
    adds one drains them.

    :param count: takes the list of :data:`Counted` entries of a batch.
    """

    def __init__(
        self, count: Callable[[list[Counted]], None], *, skip_prefix: str, limit: int = 512
    ) -> None:
        self.count = count
        self.skip_prefix = skip_prefix
        self.limit = limit
        self.pending: deque[Finished] = deque()
        self._lock = threading.Lock()

    def add(self, finished: Finished) -> None:
        self.pending.append(finished)
        if len(self.pending) >= self.limit:
            self.drain()

    def drain(self) -> None:
        batch: list[Counted] = []
        with self._lock:  # one drainer at a time; appends go on meanwhile
            while self.pending:
                at, seconds, status, endpoint, method = self.pending.popleft()
                if endpoint is not None and endpoint.startswith(self.skip_prefix):
                    continue  # the health endpoints are not the app's traffic
                batch.append((at, seconds, int(status[:3]), endpoint or "<unmatched>", method))
            if batch:
                self.count(batch)
