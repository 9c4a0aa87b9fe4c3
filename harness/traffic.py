"""Running locust against a stack, and reading what every request got."""

from __future__ import annotations

import csv
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.stack import BIN, ROOT

LOCUSTFILE = ROOT / "harness" / "locustfile.py"
DATABASE_ENDPOINTS = frozenset(
    {
        "/api/documents",
        "/api/documents/<id>",
        "/api/stats",
        "/api/me",
        "/api/documents [POST]",
        "/login [POST]",
    }
)


@dataclass(frozen=True)
class Request:
    start: float
    name: str
    status: int
    milliseconds: float
    error: str

    @property
    def end(self) -> float:
        return self.start + self.milliseconds / 1000


class Load:
    """A headless locust run in a child process, recording every request to a file."""

    def __init__(self, url: str, users: int, seconds: float, log: Path, spawn_rate: float) -> None:
        self.log = log
        command = [
            str(BIN / "locust"),
            "--locustfile",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            url,
            "--users",
            str(users),
            "--spawn-rate",
            str(spawn_rate),
            "--run-time",
            f"{max(1, round(seconds))}s",
            "--stop-timeout",
            "10",
            "--only-summary",
            "--loglevel",
            "ERROR",
            "--skip-log-setup",
        ]
        env = {"HARNESS_REQUEST_LOG": str(log), "PATH": str(BIN)}
        self.started = time.time()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.seconds = seconds

    def wait(self) -> None:
        """Wait for the run to end (its run time plus the users' stop timeout)."""
        try:
            _, errors = self.process.communicate(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError("locust did not stop on time") from None
        # Locust exits 1 when any request failed, which a fault run expects.
        if self.process.returncode not in (0, 1):
            raise RuntimeError(f"locust failed ({self.process.returncode}): {errors.decode()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def requests(self) -> list[Request]:
        return read_requests(self.log)


def read_requests(path: Path) -> list[Request]:
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return sorted(
            (
                Request(float(t), name, int(status), float(ms), error)
                for t, name, status, ms, error in csv.reader(file)
            ),
            key=lambda request: request.start,
        )


@dataclass(frozen=True)
class Summary:
    requests: int
    statuses: Counter[str]
    p50: float
    p95: float
    p99: float
    throughput: float

    def failures(self) -> str:
        """Every answer that is not a success, by status ("0" for no answer)."""
        failed = {
            status: count
            for status, count in sorted(self.statuses.items())
            if not status.startswith(("2", "3"))
        }
        return ", ".join(f"{count} x {status}" for status, count in failed.items()) or "none"

    def count(self, predicate: str) -> int:
        return sum(count for status, count in self.statuses.items() if status.startswith(predicate))


def summarize(requests: Iterable[Request], seconds: float) -> Summary:
    requests = list(requests)
    times = sorted(request.milliseconds for request in requests)
    statuses = Counter(request.error or str(request.status) for request in requests)
    return Summary(
        requests=len(requests),
        statuses=statuses,
        p50=percentile(times, 50),
        p95=percentile(times, 95),
        p99=percentile(times, 99),
        throughput=len(requests) / seconds if seconds else 0.0,
    )


def percentile(sorted_values: list[float], percent: float) -> float:
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[round(percent) - 1]
