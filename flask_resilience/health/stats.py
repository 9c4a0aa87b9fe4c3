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

    def record(self, duration: float, status: int) -> None:
        """Count one request that took ``duration`` seconds and answered ``status``."""
        now = self._clock()
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
