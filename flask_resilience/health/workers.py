"""What every worker of an instance shows the dashboard: one snapshot file per worker.

Under gunicorn each poll of the dashboard reaches whichever worker is free, and each
worker only knows its own history. So every worker's monitor thread writes a small
JSON snapshot of itself (its recent samples, request rate, 429s, breakers and
bulkheads) into a folder of the instance folder, once per monitor interval, and the
dashboard's data endpoint reads them all. Nothing of this runs on a request's path:
the files are written by the monitor's thread and read only by the endpoint.

A snapshot whose process is gone (gunicorn recycled or lost the worker) is removed
by the next reader; one that has not been rewritten for a while (a stuck thread, a
pid taken by another program) is left out.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

FOLDER = "resilience-workers"
"""The folder, in the app's instance folder, that holds one snapshot per worker."""

HISTORY = 150
"""Samples of each worker kept in its snapshot."""

STALE_INTERVALS = 10
"""A snapshot older than this many monitor intervals (and at least 30 s) is left out."""


def counter_total(counter: Any) -> float:
    """The ``_total`` of a prometheus counter of this process, summed over its labels."""
    total = 0.0
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return total


def breaker_summary(breakers: Any) -> dict[str, dict[str, Any]]:
    """Name, state and window of each breaker from the circuit-breaker provider."""
    if not isinstance(breakers, Mapping):
        return {}
    summary = {}
    for name, value in breakers.items():
        if isinstance(value, Mapping) and isinstance(value.get("state"), str):
            summary[str(name)] = {
                "state": value["state"],
                "calls": value.get("calls"),
                "failure_rate": value.get("failure_rate"),
            }
    return summary


def bulkhead_summary(bulkheads: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(bulkheads, Mapping):
        return {}
    summary = {}
    for name, value in bulkheads.items():
        if isinstance(value, Mapping) and isinstance(value.get("in_use"), int):
            summary[str(name)] = {
                "in_use": value["in_use"],
                "max_concurrent": value.get("max_concurrent"),
                "rejected": value.get("rejected", 0),
            }
    return summary


class WorkerSnapshots:
    """The snapshot files of the workers that share ``folder``.

    :param interval: the monitor's interval, which says when a snapshot is stale.
    """

    def __init__(self, folder: Path, interval: float) -> None:
        self.folder = folder
        self.max_age = max(30.0, STALE_INTERVALS * interval)
        self.failing = False  # the last write failed: the failure was logged already

    def path(self, pid: int) -> Path:
        return self.folder / f"{pid}.json"

    def write(self, snapshot: Mapping[str, Any]) -> None:
        """Replace this process's snapshot atomically: a reader sees the old or the new."""
        self.folder.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        temporary = self.folder / f".{pid}.{threading.get_ident()}.tmp"
        temporary.write_text(json.dumps(snapshot, default=str))
        os.replace(temporary, self.path(pid))

    def remove(self) -> None:
        """Take this process's snapshot away (at a worker's exit)."""
        with contextlib.suppress(OSError):
            self.path(os.getpid()).unlink()

    def read(self) -> list[dict[str, Any]]:
        """Every live worker's snapshot, by pid; removes those of dead processes."""
        found = []
        now = time.time()
        try:
            entries = list(self.folder.glob("*.json"))
        except OSError:
            return []
        for entry in entries:
            try:
                pid = int(entry.stem)
            except ValueError:
                continue
            if not psutil.pid_exists(pid):
                with contextlib.suppress(OSError):
                    entry.unlink()
                continue
            try:
                snapshot = json.loads(entry.read_text())
            except (OSError, ValueError):
                continue  # removed or replaced meanwhile
            written = snapshot.get("written_at") if isinstance(snapshot, dict) else None
            if not isinstance(written, (int, float)) or now - written > self.max_age:
                continue
            found.append(snapshot)
        return sorted(found, key=lambda snapshot: int(snapshot.get("pid", 0)))


def instance_totals(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """What the workers add up to: request rate, requests, 5xx, 429s, bulkheads."""
    bulkheads: dict[str, dict[str, Any]] = {}
    for worker in workers:
        for name, value in worker.get("bulkheads", {}).items():
            total = bulkheads.setdefault(
                name, {"in_use": 0, "rejected": 0, "max_concurrent": value.get("max_concurrent")}
            )
            total["in_use"] += value.get("in_use") or 0
            total["rejected"] += value.get("rejected") or 0
    requests = [worker.get("requests", {}) for worker in workers]
    return {
        "workers": len(workers),
        "requests_per_second": round(sum(r.get("requests_per_second") or 0 for r in requests), 3),
        "requests": sum(r.get("total") or 0 for r in requests),
        "errors": sum(r.get("total_errors") or 0 for r in requests),
        "rate_limited": sum(worker.get("rate_limited") or 0 for worker in workers),
        "bulkheads": bulkheads,
    }
