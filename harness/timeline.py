"""A run second by second: latency, answers by status class and health, windows shaded."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.traffic import Request, percentile
from harness.watch import Sample

CLASSES = (
    ("2xx/3xx", "#4c9a2a"),
    ("4xx", "#e0b000"),
    ("503/504", "#e07000"),
    ("other 5xx", "#c00000"),
    ("no answer", "#7f7f7f"),
)
HEALTH_COLOURS = {200: "#4c9a2a", 503: "#e07000", 0: "#7f7f7f"}


@dataclass(frozen=True)
class Window:
    """A fault on the time line: injected, back, and everything healthy again."""

    label: str
    injected: float
    returned: float
    recovered: float


def status_class(request: Request) -> str:
    if request.status == 0:
        return "no answer"
    if request.status < 400:
        return "2xx/3xx"
    if request.status < 500:
        return "4xx"
    return "503/504" if request.status in (503, 504) else "other 5xx"


def plot(
    path: Path,
    requests: Sequence[Request],
    samples: Sequence[Sample],
    windows: Sequence[Window],
    origin: float,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max([r.end for r in requests] + [s.start for s in samples] + [origin + 1])
    seconds = math.ceil(end - origin)
    by_second: list[list[Request]] = [[] for _ in range(seconds + 1)]
    for request in requests:
        by_second[max(0, int(request.start - origin))].append(request)
    x = list(range(len(by_second)))

    figure, (latency, rate, health) = plt.subplots(
        3, 1, figsize=(13, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1]}
    )
    figure.suptitle(title)

    answered = [sorted(r.milliseconds for r in second if r.status) for second in by_second]
    for percent, style in ((50, "-"), (95, "--")):
        values = [percentile(times, percent) if times else math.nan for times in answered]
        latency.plot(x, values, style, linewidth=1, color="#1f4e9a", label=f"p{percent}")
    latency.set_yscale("log")
    latency.set_ylabel("latency of answers (ms, log)")
    latency.legend(loc="upper left", fontsize=8)

    bottom = [0] * len(x)
    for name, colour in CLASSES:
        counts = [sum(status_class(r) == name for r in second) for second in by_second]
        rate.bar(x, counts, width=1.0, bottom=bottom, color=colour, label=name, align="edge")
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    rate.set_ylabel("requests started / s")
    rate.legend(loc="upper left", fontsize=8, ncol=len(CLASSES))

    for row, probe in enumerate(("/health/live", "/health/ready")):
        points = [s for s in samples if s.path == probe]
        health.scatter(
            [s.start - origin for s in points],
            [row] * len(points),
            c=[HEALTH_COLOURS.get(s.status, "#c00000") for s in points],
            s=6,
            marker="|",
        )
    health.set_yticks([0, 1], ["live", "ready"])
    health.set_ylim(-0.6, 1.6)
    health.set_xlabel("seconds since the load began (health: green 200, orange 503, grey none)")

    for number, window in enumerate(windows, 1):
        injected, returned = window.injected - origin, window.returned - origin
        for axes in (latency, rate, health):
            axes.axvspan(injected, returned, color="#d62728", alpha=0.15)
            axes.axvspan(returned, window.recovered - origin, color="#ff9900", alpha=0.15)
        latency.annotate(
            f"{number} {window.label}",
            xy=(injected, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
        )
    health.set_xlim(0, len(x))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
