"""System and process measurements that never block.

``psutil.cpu_percent(interval=1)`` sleeps for the interval; ``interval=None``
compares with a baseline that is global to psutil, so any other caller moves it.
:class:`CpuMeter` keeps its own baseline instead. Memory is a share of the
container's cgroup limit when there is one: the host's total means nothing to a
pod that is killed at its limit.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")


class CpuMeter:
    """CPU use since the previous reading, from this meter's own baseline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process = psutil.Process()
        self._last_system = self._system_busy()
        self._last_process = self._process_seconds()

    @staticmethod
    def _system_busy() -> tuple[float, float]:
        times = psutil.cpu_times()
        total = sum(times)
        idle = times.idle + getattr(times, "iowait", 0.0)
        return total - idle, total

    def _process_seconds(self) -> tuple[float, float]:
        times = self._process.cpu_times()
        return times.user + times.system, time.monotonic()

    def read(self) -> tuple[float, float]:
        """(host CPU percent of all cores, this process's percent of one core)."""
        with self._lock:
            busy, total = self._system_busy()
            last_busy, last_total = self._last_system
            self._last_system = busy, total
            seconds, at = self._process_seconds()
            last_seconds, last_at = self._last_process
            self._last_process = seconds, at
        system = 100.0 * (busy - last_busy) / (total - last_total) if total > last_total else 0.0
        process = 100.0 * (seconds - last_seconds) / (at - last_at) if at > last_at else 0.0
        return round(max(0.0, system), 2), round(max(0.0, process), 2)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def cgroup_memory(root: Path = CGROUP_ROOT) -> tuple[int, int] | None:
    """(working set, limit) in bytes of the cgroup, or ``None`` without a limit.

    The working set leaves out inactive page cache, the way the kubelet counts it.
    """
    if (root / "memory.max").exists():  # cgroup v2
        limit = _read_int(root / "memory.max")
        usage = _read_int(root / "memory.current")
        inactive = _stat_value(root / "memory.stat", "inactive_file")
    else:  # cgroup v1
        base = root / "memory"
        limit = _read_int(base / "memory.limit_in_bytes")
        usage = _read_int(base / "memory.usage_in_bytes")
        inactive = _stat_value(base / "memory.stat", "total_inactive_file")
    if limit is None or usage is None or limit >= psutil.virtual_memory().total:
        return None  # "max", or a v1 "unlimited" that is larger than the host
    return max(0, usage - inactive), limit


def memory_usage(root: Path = CGROUP_ROOT) -> dict[str, Any]:
    """Memory in use as a percentage of the container's limit, else of the host."""
    cgroup = cgroup_memory(root)
    if cgroup is not None:
        used, limit = cgroup
        return {
            "percent": round(100.0 * used / limit, 2),
            "used_bytes": used,
            "limit_bytes": limit,
            "source": "cgroup",
        }
    memory = psutil.virtual_memory()
    return {
        "percent": round(memory.percent, 2),
        "used_bytes": memory.total - memory.available,
        "limit_bytes": memory.total,
        "source": "host",
    }


def existing_folder(path: str) -> str:
    """The folder itself or its nearest parent that exists (the instance folder may not)."""
    folder = Path(path).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return str(folder)


def disk_usage(path: str) -> dict[str, Any]:
    usage = shutil.disk_usage(existing_folder(path))
    return {
        "percent": round(100.0 * usage.used / usage.total, 2) if usage.total else 0.0,
        "used_bytes": usage.used,
        "total_bytes": usage.total,
        "free_bytes": usage.free,
    }


def process_metrics(process: psutil.Process) -> dict[str, Any]:
    with process.oneshot():
        return {
            "pid": process.pid,
            "rss_bytes": process.memory_info().rss,
            "threads": process.num_threads(),
            "open_files": _open_files(process),
            "uptime_seconds": round(time.time() - process.create_time(), 1),
        }


def _open_files(process: psutil.Process) -> int:
    if hasattr(process, "num_fds"):  # POSIX: cheap, counts sockets too
        return int(process.num_fds())
    return len(process.open_files())  # pragma: no cover - Windows


def current_process() -> psutil.Process:
    return psutil.Process(os.getpid())
