"""The benchmark page (docs/benchmarks.md): the table, and the machine and versions
that produced it."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from bench.table import Row, render

# Distribution names, as pip knows them, and how the page names them.
PACKAGES = {
    "Flask": "Flask",
    "Werkzeug": "Werkzeug",
    "Flask-Limiter": "Flask-Limiter",
    "limits": "limits",
    "prometheus-flask-exporter": "prometheus-flask-exporter",
    "prometheus_client": "prometheus_client",
    "flask-resilience": "flask_resilience",
}

HOW = """\
Each request figure is an in-process call of the app's WSGI callable, as a server
makes it, without a test client or a socket. The contenders of one comparison run
in interleaved rounds: each round calls every contender many times in turn, timed
by the CPU time of the measuring thread, and a figure is the median of the rounds.
A burst of load on the machine so weighs on every contender alike, and time other
processes hold the core is left out. The hello-world contenders share one such
comparison, and each other group of rows has its own. Readiness is the worst
wall-clock latency; the monitor's figure is the thread CPU time of one sample."""

TARGETS = """\
- **defaults without rate limiting / bare**: `Resilience(app)` with
  `RATELIMIT_ENABLED = False` (problem errors, request ids, log context, health's
  request timing and metrics) next to bare Flask on a hello-world view.
- **everything on / Flask-Limiter + exporter**: flask_resilience with session checks
  and rate limiting (memory storage) on as well, against the two extensions an app
  would otherwise stack for rate limits and metrics, with the same limit and
  X-RateLimit headers. Below 1.0 it is the cheaper of the two.
- **guarded / bare**: a view behind a permission guard, with session schema and
  timeouts checked, next to the same view unguarded; once with the cookie checked,
  once re-signed on every request.
- **validation time, 500 MB / 1 MB** and **peak memory growth**: validating an
  upload costs the same whatever its size, and holds none of the file in memory.
- **circuit_breaker (memory) overhead**: a call through a closed breaker costs at
  most 3 us more than the bare call.
- **/health/live**, **health's request timing**, **/health/ready** and **monitor
  CPU**: liveness answers about as fast as a hello-world view, timing requests costs
  each a few microseconds, a hanging check holds readiness no longer than its
  timeout, and the background monitor takes a sliver of one core.
- **part: ...**: each part turned on alone over a hello-world app with every part
  off, so that a regression shows on its part's row. Below zero, a part saves work
  the baseline does: with the session guard (on by default, and under the session
  checks), a request without cookies gets its empty session without the signing
  serializer Flask builds for it."""


def cpu_model() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def operating_system() -> str:
    kernel = f"{platform.system()} {platform.release()}"
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return kernel
    return f"{release.get('PRETTY_NAME', release.get('NAME', ''))}, {kernel}".lstrip(", ")


def machine() -> str:
    memory_gib = psutil.virtual_memory().total / 2**30
    return f"{cpu_model()}, {psutil.cpu_count()} cores, {memory_gib:.1f} GiB, {operating_system()}"


def load_average() -> str:
    """The machine's load average: other processes' load still costs the contenders
    some cache and memory bandwidth."""
    one, five, fifteen = psutil.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min)"


def versions(packages: dict[str, str] = PACKAGES) -> str:
    """Python's version and those of ``packages`` (distribution name: name on the page)."""
    found = [f"Python {platform.python_version()}"]
    for distribution, name in packages.items():
        try:
            found.append(f"{name} {version(distribution)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def page(rows: list[Row], *, load_at_start: str) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""\
# Benchmarks

`make bench` measures every figure below in one run and rewrites this page
(`python -m bench --smoke` runs every benchmark briefly and writes nothing).

- Date: {when}
- Machine: {machine()}
- Load average when the run began: {load_at_start}
- Versions: {versions()}

## How it is measured

{HOW}

## Targets

{TARGETS}

## Results

```text
{render(rows)}
```
"""
