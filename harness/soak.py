"""A long, steady load on the example app: does anything in its processes grow?

``python -m harness.soak [--minutes N]`` serves the example app under gunicorn
(four sync workers, worker recycling off), loads it with 40 simulated users for
N minutes (10 by default) and samples every gunicorn process every 10 seconds:
resident memory, threads and open file descriptors, next to the requests of
each interval. The first two minutes (a fifth of a shorter run) are warm-up and
left out of the growth figures. It prints the figures, writes ``docs/soak.md``
and ``docs/soak.png``, and exits 1 when a target is missed.

``--smoke`` runs the same for 30 seconds, sampling every 2 seconds, and
judges only what such a short run can tell: no 5xx, every request answered,
every process sampled at every tick. ``--output DIR`` writes the page and the
plot to ``DIR`` instead of ``docs/``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psutil

from harness import report
from harness.resources import Sample, Series, sample
from harness.stack import Stack
from harness.traffic import Load, Request, percentile, read_requests, summarize

PAGE = "soak"
USERS = 40
SPAWN_RATE = 5
INTERVAL = 10.0
MINUTES = 10.0
MAX_WARM_UP = 120.0
WARM_UP_SHARE = 0.2
RSS_GROWTH_LIMIT = 5.0
"""Percent, the largest growth over any worker after the warm-up."""
P95_LIMIT = 500.0
"""Milliseconds, the p95 the example API promises (see harness.stack.REQUEST_TIMEOUT)."""

#: Gunicorn replaces a worker after max_requests requests (example_app/gunicorn.conf.py),
#: which would start its memory afresh and hide a leak: the soak turns that off.
NO_RECYCLING = ("--max-requests", "0")
MEBIBYTE = 2**20


@dataclass(frozen=True)
class Plan:
    seconds: float
    interval: float
    warm_up: float
    users: int
    spawn_rate: float
    smoke: bool = False

    @classmethod
    def full(cls, minutes: float) -> Plan:
        seconds = minutes * 60
        return cls(seconds, INTERVAL, min(MAX_WARM_UP, WARM_UP_SHARE * seconds), USERS, SPAWN_RATE)

    @classmethod
    def quick(cls) -> Plan:
        # The 20 users arrive over the 10 s warm-up, 2 a second: all at once, their
        # logins (scrypt) queue past MAX_QUEUE_TIME on a busy machine and are shed.
        return cls(30, 2, 10, 20, 2, smoke=True)

    @property
    def ticks(self) -> int:
        """Samples of each process, the first as the load starts."""
        return int(self.seconds // self.interval) + 1

    def command(self) -> str:
        if self.smoke:
            return "python -m harness.soak --smoke"
        return f"python -m harness.soak --minutes {self.seconds / 60:g}"


@dataclass(frozen=True)
class Run:
    plan: Plan
    master: int
    workers: Sequence[int]
    started: float
    """Wall-clock time the load started, which the request log's times count from too."""
    samples: Sequence[Sample]
    problems: Sequence[str]
    requests: Sequence[Request]

    def series(self, pid: int) -> Series:
        return Series(
            pid, [item for item in self.samples if item.pid == pid and self.after_warm_up(item)]
        )

    def after_warm_up(self, item: Sample) -> bool:
        return item.seconds >= self.plan.warm_up

    def name(self, pid: int) -> str:
        if pid == self.master:
            return "master"
        return f"worker {self.workers.index(pid) + 1}"


# -- the run -----------------------------------------------------------------------


def soak(plan: Plan) -> Run:
    with Stack(gunicorn_args=NO_RECYCLING) as stack:
        master, *workers = (process.pid for process in stack.processes())
        log = stack.folder / "requests.csv"
        load = Load(stack.url, plan.users, plan.seconds, log, plan.spawn_rate)
        try:
            samples, problems = watch(stack, load, plan, [master, *workers])
            load.wait()
        finally:
            load.stop()
        return Run(plan, master, workers, load.started, samples, problems, read_requests(log))


def watch(
    stack: Stack, load: Load, plan: Plan, expected: Sequence[int]
) -> tuple[list[Sample], list[str]]:
    """Sample every gunicorn process once a tick, for the length of the load."""
    samples: list[Sample] = []
    problems: list[str] = []
    previous = sorted(expected)
    for tick in range(plan.ticks):
        # Never longer than one interval: a clock that jumps must not stall the run.
        time.sleep(min(plan.interval, max(0.0, load.started + tick * plan.interval - time.time())))
        seconds = time.time() - load.started
        if tick and load.process.poll() is not None:
            problems.append(f"{seconds:.0f} s: the load generator stopped early")
            break
        processes = stack.processes()
        found = sorted(process.pid for process in processes)
        if found != previous:
            gone = sorted(set(previous) - set(found))
            new = sorted(set(found) - set(previous))
            problems.append(f"{seconds:.0f} s: processes gone {gone}, new {new}")
            previous = found
        taken = []
        for process in processes:
            try:
                taken.append(sample(process, seconds, stack.port))
            except psutil.Error as error:
                problems.append(f"{seconds:.0f} s: pid {process.pid}: {error!r}")
        samples.extend(taken)
        print(progress(seconds, taken), flush=True)
    return samples, problems


def progress(seconds: float, taken: Sequence[Sample]) -> str:
    def each(values: Sequence[object]) -> str:
        return "/".join(map(str, values))

    return (
        f"{seconds:6.0f} s  RSS MiB {each([item.rss // MEBIBYTE for item in taken])}"
        f"  threads {each([item.threads for item in taken])}"
        f"  fds {each([item.fds for item in taken])}"
    )


# -- the figures -------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    measure: str
    figure: str
    target: str = "—"
    met: bool | None = None
    judged: bool = True
    """A smoke run is too short to judge growth: it shows the figure only."""

    def verdict(self) -> str:
        if self.met is None:
            return "—"
        if not self.judged:
            return f"not judged ({report.verdict(self.met)})"
        return report.verdict(self.met)

    @property
    def failed(self) -> bool:
        return self.judged and self.met is False


@dataclass(frozen=True)
class Interval:
    end: float
    requests: int
    p50: float
    p95: float


def intervals(run: Run) -> list[Interval]:
    """The requests started within each interval that ends at a tick."""
    interval = run.plan.interval
    times: list[list[float]] = [[] for _ in range(run.plan.ticks - 1)]
    for request in run.requests:
        index = int((request.start - run.started) // interval)
        if 0 <= index < len(times):
            times[index].append(request.milliseconds)
    return [
        Interval((index + 1) * interval, len(values), *latencies(sorted(values)))
        for index, values in enumerate(times)
    ]


def latencies(sorted_values: list[float]) -> tuple[float, float]:
    return percentile(sorted_values, 50), percentile(sorted_values, 95)


def checks(run: Run) -> list[Check]:
    return [
        *memory_checks(run),
        *steadiness_checks(run),
        sampling_check(run),
        *request_checks(run),
    ]


def memory_checks(run: Run) -> list[Check]:
    judged = not run.plan.smoke
    workers = [run.series(pid) for pid in run.workers]
    target = f"< {RSS_GROWTH_LIMIT:g}%"
    growth = max(workers, key=Series.rss_growth)
    trend = max(workers, key=Series.rss_trend)
    master = run.series(run.master)
    both = max(master.rss_growth(), master.rss_trend())
    return [
        Check(
            f"Worker RSS growth, last vs first sample (max of {len(workers)})",
            f"{growth.rss_growth():+.1f}% ({run.name(growth.pid)}: "
            f"{mib(growth.first_rss)} → {mib(growth.last_rss)} MiB)",
            target,
            growth.rss_growth() < RSS_GROWTH_LIMIT,
            judged,
        ),
        Check(
            f"Worker RSS growth, least-squares line over the window (max of {len(workers)})",
            f"{trend.rss_trend():+.1f}% ({run.name(trend.pid)})",
            target,
            trend.rss_trend() < RSS_GROWTH_LIMIT,
            judged,
        ),
        Check(
            "Master RSS growth, last vs first / line",
            f"{master.rss_growth():+.1f}% / {master.rss_trend():+.1f}%",
            target,
            both < RSS_GROWTH_LIMIT,
            judged,
        ),
    ]


def steadiness_checks(run: Run) -> list[Check]:
    judged = not run.plan.smoke
    every = [run.series(pid) for pid in (run.master, *run.workers)]

    def worst(measure: str) -> tuple[int, str]:
        series = max(every, key=lambda item: item.spread(measure))
        spread = series.spread(measure)
        return spread, f"{spread} ({run.name(series.pid)})" if spread else "0"

    threads, threads_figure = worst("threads")
    fds, fds_figure = worst("fds")
    others, others_figure = worst("other_fds")
    return [
        Check("Threads, max - min (worst process)", threads_figure, "0", threads == 0, judged),
        Check(
            "File descriptors, max - min (worst process)",
            fds_figure,
            "0, or 1 from a request in flight",
            fds == 0 or (fds == 1 and others == 0),
            judged,
        ),
        Check(
            "File descriptors other than client connections, max - min",
            others_figure,
            "0",
            others == 0,
            judged,
        ),
    ]


def sampling_check(run: Run) -> Check:
    pids = {run.master, *run.workers}
    processes = len(pids)
    expected = processes * run.plan.ticks
    taken = sum(1 for item in run.samples if item.pid in pids)
    figure = f"{taken} of {expected} ({processes} processes x {run.plan.ticks} ticks)"
    if run.problems:
        figure += f"; {len(run.problems)} problems (see notes)"
    return Check(
        "Samples of every process at every tick, none replaced",
        figure,
        "all",
        taken == expected and not run.problems,
    )


def request_checks(run: Run) -> list[Check]:
    summary = summarize(run.requests, run.plan.seconds)
    steady = summarize(
        (r for r in run.requests if r.start - run.started >= run.plan.warm_up),
        run.plan.seconds - run.plan.warm_up,
    )
    unanswered = sum(
        count for status, count in summary.statuses.items() if not status.isdigit() or status == "0"
    )
    return [
        Check("Requests", f"{summary.requests} ({summary.throughput:.1f}/s)"),
        Check(
            "Failures by status",
            summary.failures(),
            "no 5xx, every request answered",
            summary.requests > 0 and summary.count("5") == 0 and unanswered == 0,
        ),
        Check(
            "Latency after warm-up, p50 / p95",
            f"{steady.p50:.0f} / {steady.p95:.0f} ms",
            f"p95 < {P95_LIMIT:g} ms",
            steady.requests > 0 and steady.p95 < P95_LIMIT,
            not run.plan.smoke,
        ),
    ]


def mib(value: float) -> str:
    return f"{value / MEBIBYTE:.1f}"


# -- the page and the plot -------------------------------------------------------


def checks_table(found: Sequence[Check]) -> str:
    return report.table(
        ["Measure", "Figure", "Target", "Met"],
        [[item.measure, item.figure, item.target, item.verdict()] for item in found],
    )


def processes_table(run: Run) -> str:
    rows = []
    for pid in (run.master, *run.workers):
        series = run.series(pid)
        rows.append(
            [
                run.name(pid),
                pid,
                sum(1 for item in run.samples if item.pid == pid),
                f"{mib(series.first_rss)} → {mib(series.last_rss)}",
                f"{series.rss_growth():+.2f}%",
                f"{series.rss_trend():+.2f}%",
                series.span("threads"),
                series.span("fds"),
                series.span("client_sockets"),
                series.span("other_fds"),
            ]
        )
    return report.table(
        [
            "Process",
            "PID",
            "Samples (whole run)",
            "RSS MiB after warm-up",
            "Last vs first",
            "Line",
            "Threads",
            "FDs",
            "Client sockets",
            "Other FDs",
        ],
        rows,
    )


def page(run: Run, found: Sequence[Check], plot_name: str) -> str:
    plan = run.plan
    window = intervals(run)
    steady = [item.requests for item in window if item.end - plan.interval >= plan.warm_up]
    counts = f"{min(steady, default=0)} to {max(steady, default=0)}"
    problems = "".join(f"\n  - {problem}" for problem in run.problems) or " none."
    smoke = (
        "\n- This is a smoke run: far too short to judge growth, so the memory, thread, "
        "descriptor and latency rows show their figures without judging them.\n"
        if plan.smoke
        else ""
    )
    return f"""\
{plan.users} simulated users (`harness/locustfile.py`) for {duration(plan.seconds)}
against the example app under gunicorn ({len(run.workers)} sync workers, worker recycling
off), on throwaway PostgreSQL and Redis on 127.0.0.1. Every gunicorn process was sampled
every {plan.interval:g} s: {plan.ticks} ticks. The first {duration(plan.warm_up)} are
warm-up and left out of every figure below except the request count and the failures.

{checks_table(found)}

Each process after warm-up:

{processes_table(run)}

![Memory, threads and descriptors of each gunicorn process, latency]({plot_name})

## How it is measured

- **Load**: locust, headless, {plan.users} users spawned {plan.spawn_rate:g} a second:
  all but two log in through the form and then list, open and upload documents, read
  statistics and `/api/me`, one to three seconds apart; two load balancers poll
  `/health/ready` once a second. Every request is logged with its start time, status and
  duration; after warm-up, each {plan.interval:g}-second interval saw {counts} requests.
- **Worker recycling is off**: `example_app/gunicorn.conf.py` sets `max_requests = 1000`
  (plus jitter), so each worker would be replaced after about 1,000 requests and start its
  memory afresh, which hides a leak. The soak passes `--max-requests 0` on gunicorn's
  command line, which wins over the file; every worker serves the whole run, and a
  replaced worker counts as a sampling problem.
- **Warm-up**: the users are spawned and log in during it, and each worker's memory
  steps up once in it: libmagic loads its database (about 8 MiB) at the worker's first
  upload, and a login hashes with scrypt, whose 32 MiB of working memory shows in a
  sample taken while one is in flight.
- **Processes**: psutil, per process, `memory_info().rss`, `num_threads()` and
  `num_fds()`; the gunicorn master and its {len(run.workers)} workers, found afresh at each
  tick.
- **RSS growth** of a process is measured two ways over the samples after warm-up: the
  last sample against the first, and the least-squares line through all of them,
  extrapolated over the window and divided by its value at the start (one sample taken in
  the middle of a large request moves the first way, barely the second). The target
  applies to the worker that grew most.
- **Threads and file descriptors** must be flat after warm-up: max - min is 0. A sync
  worker holds the socket of the client it is answering while, and only while, it
  answers: a sample that lands on a request in flight counts one descriptor more. Each
  sample therefore also lists the process's TCP sockets (`net_connections()`) and counts
  the accepted ones on the app's port ("client sockets"), taking the sample again when the
  descriptor count changed while it was taken; "other FDs" is the count without them and
  must not move at all.
- **Latency** is locust's time to the whole answer, p50 and p95 of the requests started
  after warm-up; the plot shows them per interval.

## Notes
{smoke}
- Sampling problems:{problems}
"""


def duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} s"


def plot(run: Run, path: Path) -> None:
    # The object API draws with Agg without choosing pyplot's global backend.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 12), layout="constrained")
    rss, threads, fds, latency = figure.subplots(4, 1, sharex=True)
    for pid in (*run.workers, run.master):
        mine = [item for item in run.samples if item.pid == pid]
        minutes = [item.seconds / 60 for item in mine]
        style = "--" if pid == run.master else "-"
        label = f"{run.name(pid)} ({pid})"
        rss.plot(minutes, [item.rss / MEBIBYTE for item in mine], style, label=label)
        threads.step(minutes, [item.threads for item in mine], style, where="post", label=label)
        fds.step(minutes, [item.fds for item in mine], style, where="post", label=label)
    window = intervals(run)
    ends = [item.end / 60 for item in window]
    latency.plot(ends, [item.p50 for item in window], label="p50")
    latency.plot(ends, [item.p95 for item in window], label="p95")
    latency.axhline(P95_LIMIT, color="red", linestyle=":", label=f"p95 target {P95_LIMIT:g} ms")
    for axes, ylabel in (
        (rss, "RSS (MiB)"),
        (threads, "threads"),
        (fds, "open file descriptors"),
        (latency, f"latency per {run.plan.interval:g} s (ms)"),
    ):
        axes.axvspan(0, run.plan.warm_up / 60, color="0.9", label="warm-up")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
    # Beside the panels, where no legend hides a line; the processes share one.
    for axes in (rss, latency):
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    threads.yaxis.get_major_locator().set_params(integer=True)
    fds.yaxis.get_major_locator().set_params(integer=True)
    latency.set_xlabel("minutes since the load started")
    rss.set_title(f"Soak: {run.plan.users} users, {duration(run.plan.seconds)}, recycling off")
    figure.savefig(path, dpi=100)


# -- the command -------------------------------------------------------------------


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.soak", description=__doc__)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=MINUTES, help="length of the load")
    length.add_argument("--smoke", action="store_true", help="a 30-second run of every part")
    parser.add_argument(
        "--output", type=Path, default=report.DOCS, help="folder of soak.md and soak.png"
    )
    options = parser.parse_args(argv)
    if not options.smoke and options.minutes < 1:
        parser.error("--minutes: at least 1, for a warm-up and enough samples after it")
    return options


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the context managers: every process and folder goes.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    options = arguments(argv)
    plan = Plan.quick() if options.smoke else Plan.full(options.minutes)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        run = soak(plan)
    except KeyboardInterrupt:
        print("Interrupted: every process stopped, nothing written.", file=sys.stderr)
        return 130
    found = checks(run)
    print(checks_table(found))
    print()
    print(processes_table(run))
    for problem in run.problems:
        print(f"problem: {problem}")
    options.output.mkdir(parents=True, exist_ok=True)
    plot(run, options.output / f"{PAGE}.png")
    body = page(run, found, f"{PAGE}.png")
    written = report.write_page(
        PAGE,
        "Soak: memory, threads and descriptors under a steady load",
        body,
        plan.command(),
        folder=options.output,
    )
    print(f"\nWrote {written} and {PAGE}.png")
    return 1 if any(item.failed for item in found) else 0


if __name__ == "__main__":
    sys.exit(main())
