"""Chaos: the example app under steady load while its dependencies and processes fail.

``python -m harness.chaos`` starts a stack, puts it under a steady locust load for
the whole run, and injects each fault of :data:`FULL` in turn: after each, it
measures how long until every endpoint is healthy again, then lets the app settle
before the next. It prints a table and writes ``docs/chaos.md`` and ``docs/chaos.png``
with every target, met or missed.

It exits 1 when a target of correctness is missed: a 500, a health endpoint that
lied, a crash logged, an error body with a traceback or not problem+json, a request in flight at
a signal left unanswered, a server that stopped or never recovered. Targets of
speed (recovery within 2 s, health polls answered within 2 s, nothing lost on a
reload, no client of a network fault kept past the deadline) depend on the machine
and only show on the page. ``--smoke`` runs three short faults in under a minute, for
the test suite; ``--fault`` runs only the faults named.

The network faults slow down and lose the packets between the app and PostgreSQL,
which then runs in a network namespace of the harness (:mod:`harness.network`).
They need root and iproute2; elsewhere they are skipped, with a message printed and
on the page.

Each worker class of ``--worker-class`` (by default sync, then gthread) has a run of
its own on a fresh stack, and a results table and a plot of its own on the page.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness import faults, report
from harness.faults import Expect, Fault, Injection
from harness.network import unavailable_reason
from harness.probe import ENDPOINTS, HEALTHY_MILLISECONDS, Prober
from harness.stack import (
    MAX_QUEUE_TIME,
    REQUEST_TIMEOUT,
    Stack,
    Workers,
    add_worker_options,
    workers_chosen,
)
from harness.timeline import Window, plot, status_class
from harness.traffic import Load, Request, read_requests
from harness.watch import HealthWatch, Sample

RECOVERY_TARGET = 2.0
RECOVERY_LIMIT = 60.0
PROBE_INTERVAL = 0.1
OBSERVED_AFTER = 3.0
"""Seconds after the return every fault's window lasts at least."""
SHUTDOWN_GRACE = 0.2
"""Seconds a worker may take to hear of a SIGTERM its master passes on."""
DEADLINE_GRACE = 1.0
"""Seconds an answer may come after its deadline and its wait for a worker: over a slow
link, the statement under way at the deadline is one more slow round trip."""
ROUTE_DEADLINES = {"/api/stats": 10.0}
"""Routes with a deadline of their own (the example app's ``@request_timeout(10)``)."""

REFUSED = "ConnectionRefusedError"
ACCESS_LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "[^"]*" (\d{3}) ')
# The example app's log format: "2026-11-22 20:34:14,019 ERROR flask_resilience [pid] ...".
APP_ERROR_RECORD = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ ERROR ", re.MULTILINE)
ERROR_LINE = re.compile(r"\[(ERROR|CRITICAL)\]|Traceback|\bERROR\b")


@dataclass(frozen=True)
class Plan:
    users: int
    warmup: float
    settle: float
    faults: tuple[Fault, ...]
    limit: float
    """Seconds the load and the polling may run at most."""
    smoke: bool


FULL = Plan(
    users=30,
    warmup=30,
    settle=25,
    faults=(
        faults.postgres_stopped(10),
        faults.connections_killed(),
        faults.table_locked(8),
        faults.slots_exhausted(8),
        faults.network_delayed(0.3, 10),
        faults.network_lossy(0.2, 10),
        faults.redis_stopped(10),
        faults.worker_killed(),
        faults.worker_killed_while_postgres_down(10),
        faults.graceful_reload(),
        faults.graceful_shutdown(),  # last: it stops the app, which is then started again
    ),
    limit=14 * 60,
    smoke=False,
)
SMOKE = Plan(
    users=10,
    warmup=4,
    settle=3,
    faults=(
        faults.postgres_stopped(6),
        faults.redis_stopped(4),
        faults.worker_killed(),
    ),
    limit=100,
    smoke=True,
)


@dataclass
class Trial:
    """One fault as it happened: its times, and gunicorn's log meanwhile."""

    fault: Fault
    injection: Injection
    recovered: float | None
    settled: float
    """When what follows the fault (workers replaced) was over too."""
    log: str

    @property
    def end(self) -> float:
        """The end of the fault's window: healthy again, everything it set off done, and
        at least a few seconds after the return, for the aftermath of an instant fault."""
        healthy = self.recovered or self.injection.returned + RECOVERY_LIMIT
        return max(healthy, self.settled, self.injection.returned + OBSERVED_AFTER)

    @property
    def recovery(self) -> float | None:
        return None if self.recovered is None else self.recovered - self.injection.returned


@dataclass(frozen=True)
class Run:
    plan: Plan
    workers: Workers
    started: float
    trials: list[Trial]
    requests: list[Request]
    samples: list[Sample]
    watch: HealthWatch
    log: str
    network: str
    """How the link to PostgreSQL was shaped; empty without network faults."""


# -- running -------------------------------------------------------------------------


def run(plan: Plan, workers: Workers) -> Run:
    with Stack(workers, network=any(fault.network for fault in plan.faults)) as stack:
        request_log = stack.folder / "requests.csv"
        prober = Prober(stack)
        if not prober.log_in():
            raise RuntimeError("the probe could not log in to a freshly started app")
        load = Load(stack.url, plan.users, plan.limit, request_log, spawn_rate=10)
        try:
            with HealthWatch(stack, plan.limit) as watch:
                time.sleep(plan.warmup)
                trials = [try_fault(stack, prober, fault, plan) for fault in plan.faults]
        finally:
            load.stop()
        return Run(
            plan,
            workers,
            load.started,
            trials,
            read_requests(request_log),
            watch.samples,
            watch,
            stack.log_file.read_text(errors="replace"),
            stack.link.mechanism if stack.link is not None else "",
        )


def try_fault(stack: Stack, prober: Prober, fault: Fault, plan: Plan) -> Trial:
    print(f"{time.strftime('%H:%M:%S')} {fault.name}", file=sys.stderr, flush=True)
    if stack.gunicorn is None or stack.gunicorn.poll() is not None:
        raise RuntimeError(f"gunicorn is not running; see {stack.log_file}")
    log_from = stack.log_file.stat().st_size
    injection = fault.inject(stack)
    recovered = wait_until_healthy(prober)
    if fault.aftermath is not None:
        fault.aftermath(stack, injection)
    settled = time.time()
    with stack.log_file.open(errors="replace") as log:
        log.seek(log_from)
        written = log.read()
    time.sleep(plan.settle)
    return Trial(fault, injection, recovered, settled, written)


def wait_until_healthy(prober: Prober) -> float | None:
    """The moment every endpoint answered 200 promptly, polled every 0.1 s; None if never."""
    deadline = time.monotonic() + RECOVERY_LIMIT
    while time.monotonic() < deadline:
        failing = prober.unhealthy()
        if not failing:
            return time.time()
        if any(entry.endswith(" 401") for entry in failing):
            prober.log_in()
        time.sleep(PROBE_INTERVAL)
    return None


# -- judging ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """What the health polls of a fault's window said against what they should have."""

    ready: Counter[int]
    live: Counter[int]
    lies: list[str]
    """Answers that contradicted the fault's expectation."""
    unanswered: list[str]
    """Polls that got no answer within their timeout where one was due."""

    def text(self) -> str:
        if not self.lies and not self.unanswered:
            return "yes"
        return "; ".join([*(f"NO: {lie}" for lie in self.lies), *self.unanswered])


@dataclass(frozen=True)
class Result:
    trial: Trial
    statuses: Counter[str]
    server_errors: int
    lost: int
    """Requests sent after the injection, accepted, then lost (reset, disconnected)."""
    refused: int
    in_flight: int
    """Requests in flight at the injection: the users', and the harness's own at a signal."""
    in_flight_answered: int
    health: Health
    bodies: int
    bad_bodies: int
    error_lines: list[str]
    late: int
    """Requests answered (or given up) after their deadline, their wait and the grace."""

    @property
    def on_time(self) -> bool:
        """No client kept waiting past the deadline: the target of the network faults."""
        return self.late == 0 or not self.trial.fault.network

    @property
    def recovered_in_time(self) -> bool:
        recovery = self.trial.recovery
        return recovery is not None and recovery <= RECOVERY_TARGET

    @property
    def lossless(self) -> bool:
        """Every request in flight answered; for a reload, none lost or refused either.

        After a shutdown's signal no listener should take requests: those refused are
        no loss, and those the kernel still accepted while a busy worker kept its copy
        of the listening socket open are counted, but need a load balancer to drain.
        """
        if self.in_flight_answered < self.in_flight:
            return False
        return self.trial.fault.expect is Expect.SHUTDOWN or self.lost + self.refused == 0

    def missed(self) -> list[str]:
        """Every target this fault missed."""
        checks = {
            "health": not self.health.unanswered,
            "recovery": self.recovered_in_time,
            "lost": self.lossless or not self.trial.fault.lossless,
            "on time": self.on_time,
        }
        return self.wrong() + [name for name, met in checks.items() if not met]

    def wrong(self) -> list[str]:
        """The targets of correctness this fault missed, which no machine excuses."""
        checks = {
            "500s": self.server_errors == 0,
            "health": not self.health.lies,
            "bodies": self.bad_bodies == 0,
            "recovered": self.trial.recovered is not None,
            "in flight": self.in_flight_answered == self.in_flight or not self.trial.fault.lossless,
            **{failure: False for failure in self.trial.injection.failed},
        }
        return [name for name, met in checks.items() if not met]


def judge(trial: Trial, run: Run) -> Result:
    start, end = trial.injection.injected, trial.end
    requests = [r for r in run.requests if r.start <= end and r.end >= start]
    in_flight = [r for r in requests if r.start < start]
    after = [r for r in requests if r.start >= start and r.status == 0]
    refused = sum(r.error == REFUSED for r in after)
    harness = trial.injection.in_flight
    errors = run.watch.errors_between(start, end)
    return Result(
        trial,
        Counter(r.error or str(r.status) for r in requests),
        sum(r.status == 500 for r in requests),
        len(after) - refused,
        refused,
        len(in_flight) + len(harness),
        sum(r.status != 0 for r in in_flight) + sum(map(bool, harness)),
        judge_health(trial, run.samples),
        len(errors),
        sum(e.traceback or (e.status >= 500 and not e.problem_json) for e in errors),
        error_lines(trial.log),
        sum(map(late, requests)),
    )


def late(request: Request) -> bool:
    """Whether a client waited longer than the request's deadline allows, answer or not."""
    deadline = ROUTE_DEADLINES.get(request.name, REQUEST_TIMEOUT)
    return request.milliseconds / 1000 > deadline + MAX_QUEUE_TIME + DEADLINE_GRACE


def judge_health(trial: Trial, samples: Sequence[Sample]) -> Health:
    """Whether /health/ready and /health/live said what the fault deserved."""
    injection, expect = trial.injection, trial.fault.expect
    start, end = injection.injected, trial.end
    ready = [s for s in samples if s.path == "/health/ready" and start <= s.start <= end]
    live = [s for s in samples if s.path == "/health/live" and start <= s.start <= end]
    lies: list[str] = []
    unanswered: list[str] = []
    if expect is not Expect.SHUTDOWN:  # live may go with a process that is going
        if any(s.status not in (0, 200) for s in live):
            lies.append("live answered other than 200")
        if silent := sum(s.status == 0 for s in live):
            unanswered.append(f"live unanswered x{silent}")
    if expect in (Expect.DATABASE_DOWN, Expect.DATABASE_SLOW) and not any(
        s.status == 503 and s.start <= injection.returned for s in ready
    ):
        lies.append("ready never 503 while the database was down")
    if expect is Expect.DATABASE_UP and any(s.status == 503 for s in ready):
        lies.append("ready 503 while the database answered")
    if expect is Expect.DATABASE_LOSSY:
        during = [s for s in ready if s.start <= injection.returned]
        if not any(s.status == 200 for s in during):
            lies.append("ready never 200 while the database answered through the lossy link")
        if any(s.status not in (0, 200, 503) for s in ready):
            lies.append("ready answered other than 200 or 503")
        if silent := sum(s.status == 0 for s in ready):
            unanswered.append(f"ready unanswered x{silent}")
    if expect in (Expect.REDIS_DOWN, Expect.PROCESSES_REPLACED):
        if any(s.status not in (0, 200) for s in ready):
            lies.append("ready answered other than 200")
        if silent := sum(s.status == 0 for s in ready):
            unanswered.append(f"ready unanswered x{silent}")
    if expect is Expect.SHUTDOWN and any(
        s.status == 200 and start + SHUTDOWN_GRACE <= s.start <= injection.returned for s in ready
    ):
        lies.append("ready 200 while shutting down")
    return Health(
        Counter(s.status for s in ready), Counter(s.status for s in live), lies, unanswered
    )


def error_lines(log: str) -> list[str]:
    """gunicorn's error-level lines and tracebacks (not the access log)."""
    return [
        line for line in log.splitlines() if not ACCESS_LINE.match(line) and ERROR_LINE.search(line)
    ]


def logged_statuses(log: str) -> Counter[str]:
    return Counter(match.group(1) for match in map(ACCESS_LINE.match, log.splitlines()) if match)


# -- reporting ---------------------------------------------------------------------


def counts(counter: Counter[str] | Counter[int], name: Callable[[str], str] = str) -> str:
    """``status count, ...``: statuses in order, then the errors of requests not answered."""
    texts = {str(key): count for key, count in counter.items()}

    def order(key: str) -> tuple[int, int, str]:
        return (0, int(key), "") if key.isdigit() else (1, 0, key)

    return ", ".join(f"{name(key)} {texts[key]}" for key in sorted(texts, key=order))


def no_answer(key: str) -> str:
    if key == "0":
        return "none"
    return "refused" if key == REFUSED else key


def mark(text: str, met: bool) -> str:
    return f"{text} {report.verdict(met)}"


def row(number: int, result: Result) -> list[str]:
    trial = result.trial
    recovery = trial.recovery
    recovery_text = "never" if recovery is None else f"{recovery:.2f} s"
    lost = f"{result.lost} lost, {result.refused} refused"
    if trial.fault.lossless:
        lost = mark(
            f"in flight: {result.in_flight_answered} of {result.in_flight} answered; after: {lost}",
            result.lossless,
        )
    health = result.health
    missed = list(dict.fromkeys(result.missed()))
    return [
        str(number),
        trial.fault.name,
        f"{trial.end - trial.injection.injected:.1f} s",
        counts(result.statuses, no_answer),
        mark(str(result.server_errors), result.server_errors == 0),
        mark(str(result.late), result.on_time) if trial.fault.network else str(result.late),
        lost,
        mark(recovery_text, result.recovered_in_time),
        f"ready {counts(health.ready, no_answer)}; live {counts(health.live, no_answer)}",
        health.text(),
        "all met" if not missed else "MISSED: " + ", ".join(missed),
    ]


HEADER = (
    "#",
    "Fault",
    "Window",
    "Answers in the window (status: count)",
    "500s (target 0)",
    f"Late: past the deadline + {MAX_QUEUE_TIME + DEADLINE_GRACE:g} s (target, network: 0)",
    "Requests lost (target: SIGHUP none, SIGTERM none in flight)",
    f"Recovery (target <= {RECOVERY_TARGET:g} s)",
    "Health polls (status: count)",
    "Health truthful",
    "Targets",
)


@dataclass(frozen=True)
class WholeRun:
    classes: Counter[str]
    server_errors: int
    """500s answered to locust's users."""
    logged: Counter[str]
    """Statuses in gunicorn's access log: every request, the harness's own too."""
    crashes: int
    """The app's ERROR records: an exception nothing handled, answered 500."""
    tracebacks: int
    """Every traceback logged, warnings included (a health check that starts failing)."""
    bodies: int
    bad_bodies: int

    @property
    def clean(self) -> bool:
        return not (self.server_errors or self.logged["500"] or self.crashes or self.bad_bodies)


def whole_run(run: Run) -> WholeRun:
    errors = run.watch.errors
    return WholeRun(
        Counter(status_class(r) for r in run.requests),
        sum(r.status == 500 for r in run.requests),
        logged_statuses(run.log),
        len(APP_ERROR_RECORD.findall(run.log)),
        run.log.count("Traceback"),
        len(errors),
        sum(e.traceback or (e.status >= 500 and not e.problem_json) for e in errors),
    )


def summary_lines(run: Run) -> list[str]:
    whole = whole_run(run)
    logged_500s = whole.logged["500"]
    bad = whole.bad_bodies
    return [
        f"Whole run: {len(run.requests)} requests from locust ({counts(whole.classes)});"
        f" {mark(f'{whole.server_errors} answered 500', whole.server_errors == 0)}.",
        f"gunicorn's access log (every request, the harness's polls too):"
        f" {counts(whole.logged)}; {mark(f'{logged_500s} x 500', logged_500s == 0)}.",
        f"The app's ERROR records (crashes) in gunicorn's log:"
        f" {mark(str(whole.crashes), whole.crashes == 0)}; tracebacks logged: {whole.tracebacks}"
        " (a health check that starts failing logs one, per worker).",
        f"Error answers to the harness's logged-in user: {whole.bodies} of"
        f" {run.watch.answers} polls of /api/documents;"
        f" {mark(f'{bad} with a traceback or not problem+json', bad == 0)}.",
    ]


def table_text(results: Sequence[Result]) -> str:
    return report.table(HEADER, [row(n, r) for n, r in enumerate(results, 1)])


@dataclass(frozen=True)
class Judged:
    """One run of the faults and its results, with the plot drawn of it."""

    run: Run
    results: list[Result]
    plot_name: str


def fault_notes(results: Sequence[Result]) -> list[str]:
    notes = []
    for number, result in enumerate(results, 1):
        lines = [
            *result.trial.injection.notes,
            f"{result.bodies} error answers sampled, {result.bad_bodies} with a traceback or"
            " not problem+json",
        ]
        unique = sorted({strip_prefix(line) for line in result.error_lines})
        lines.append(
            f"{len(result.error_lines)} error lines in gunicorn's log"
            + (": " + "; ".join(f"`{line}`" for line in unique[:4]) if unique else "")
        )
        why = f" {result.trial.fault.why}" if result.trial.fault.why else ""
        notes.append(
            f"{number}. **{result.trial.fault.name}**.{why} Measured: " + "; ".join(lines) + "."
        )
    return notes


def results_section(judged: Judged) -> list[str]:
    run = judged.run
    duration = max((r.end for r in run.requests), default=run.started) - run.started
    return [
        f"## Results: {run.workers.label}",
        "",
        f"Run of {duration:.0f} s.",
        "",
        table_text(judged.results),
        "",
        *(f"- {line}" for line in summary_lines(run)),
        "",
        f"![Latency, answers per second and health over the run]({judged.plot_name})",
        "",
        "Red: from the injection until the dependency is back (or the signal);"
        " orange: until every endpoint is healthy again.",
        "",
    ]


def network_text(runs: Sequence[Judged], skipped: str) -> list[str]:
    """How PostgreSQL was reached, and how its link was degraded (or why it was not)."""
    if skipped:
        return [skipped + " They need root and iproute2 to make a network namespace.", ""]
    mechanisms = sorted({judged.run.network for judged in runs if judged.run.network})
    if not mechanisms:
        return []
    return [
        "PostgreSQL runs in a network namespace that the harness makes for it, reached"
        " through a point-to-point link of its own: every packet between the app and the"
        " database crosses that link, and the network faults delay or drop the packets"
        " bound for PostgreSQL on it (the answers pass untouched, as with netem on one end"
        f" of a veth pair). Here the link was shaped by {' and '.join(mechanisms)}.",
        "",
    ]


def where_servers(runs: Sequence[Judged]) -> str:
    if any(judged.run.network for judged in runs):
        return "Redis on loopback, PostgreSQL in a network namespace of its own (below)"
    return "PostgreSQL and Redis, all on loopback"


def page_body(runs: Sequence[Judged], skipped: str = "") -> str:
    plan = runs[0].run.plan
    servers = ", then ".join(judged.run.workers.label for judged in runs)
    each = ", each in a run of its own on a fresh stack" if len(runs) > 1 else ""
    faults_table = report.table(
        ("#", "Fault", "How it is injected", "What health should say"),
        [
            (n, r.trial.fault.name, r.trial.fault.how, r.trial.fault.expect.value)
            for n, r in enumerate(runs[0].results, 1)
        ],
    )
    notes = []
    for judged in runs:
        notes += [f"### {judged.run.workers.label}", "", *fault_notes(judged.results), ""]
    return "\n".join(
        [
            f"{plan.users} simulated users (locust, `harness/locustfile.py`) and two load"
            " balancers' readiness probes load the example app for the whole run: gunicorn"
            f" with {servers}{each}; {where_servers(runs)}, request deadline"
            f" {REQUEST_TIMEOUT} s. The faults come one at a time; after each, the harness"
            " waits until every endpoint is healthy, then lets the app settle"
            f" {plan.settle:g} s before the next.",
            "",
            *network_text(runs, skipped),
            "## The faults",
            "",
            faults_table,
            "",
            *(line for judged in runs for line in results_section(judged)),
            "## How the figures are taken",
            "",
            "- **Window**: from the injection until every endpoint is healthy again and what"
            f" the fault set off (new workers) is done, {OBSERVED_AFTER:g} s after the return"
            " at least. The answers are those of locust's requests under way at any moment"
            " of it.",
            "- **Lost**: requests sent after the injection that got no answer other than a"
            " refused connection (reset, disconnected); **refused**: connections refused"
            " while no listener was open. **In flight** (signals): the users' requests"
            " under way at the signal, and two uploads of the harness whose bodies are half"
            " sent at the signal and finished 0.5 s after it; each must be answered. The"
            " names of requests without an answer are locust's: `RetriesExceeded` is a"
            " timeout (5 s for the load balancers' probes, 30 s for the users) or an empty"
            " answer, `HTTPConnectionClosed` a connection closed without an answer.",
            "- **Late**: requests whose client waited longer than the request's deadline"
            f" ({REQUEST_TIMEOUT} s; 10 s for `/api/stats`), plus the {MAX_QUEUE_TIME} s a"
            f" request may wait for a worker before it is shed, plus {DEADLINE_GRACE:g} s,"
            " answered or not. A target for the network faults, where the deadline, not"
            " the database, must end a slow request.",
            "- **Recovery**: from the dependency's return (the end of the outage, the"
            " signal, or for SIGTERM the new start) until `Prober.all_healthy()`, polled"
            f" every {PROBE_INTERVAL:g} s, finds {', '.join(ENDPOINTS)} answering 200 within"
            f" {HEALTHY_MILLISECONDS / 1000:g} s.",
            "- **Health**: `/health/ready` and `/health/live` polled every 0.2 s (2 s timeout,"
            " 0: no answer in time) for the whole run; each fault is judged by the polls of its"
            " window against the expectation in the table above.",
            "- **Error bodies**: the harness's own logged-in user asks `/api/documents` every"
            " 0.5 s; every error answer must be problem+json, without a traceback.",
            "",
            "## Notes",
            "",
            *notes,
        ]
    ).rstrip()


def strip_prefix(line: str) -> str:
    """A log line without its time and process id, so that repeats collapse."""
    return re.sub(r"^\[[^\]]+\] \[\d+\] ", "", line).strip()


def windows(results: Iterable[Result]) -> list[Window]:
    return [
        Window(
            r.trial.fault.label,
            r.trial.injection.injected,
            r.trial.injection.returned,
            r.trial.end,
        )
        for r in results
    ]


def plot_name(workers: Workers) -> str:
    """``chaos.png`` for the sync run, ``chaos-gthread.png`` for the gthread one."""
    return "chaos.png" if workers.kind == "sync" else f"chaos-{workers.kind}.png"


def run_and_judge(plan: Plan, workers: Workers, output: Path, command: str) -> Judged:
    outcome = run(plan, workers)
    results = [judge(trial, outcome) for trial in outcome.trials]
    print(workers.label)
    print(table_text(results))
    for line in summary_lines(outcome):
        print(line)
    name = plot_name(workers)
    plot(
        output / name,
        outcome.requests,
        outcome.samples,
        windows(results),
        outcome.started,
        f"{command}: {plan.users} users, {workers.label}, faults one at a time",
    )
    return Judged(outcome, results, name)


def network_faults_skipped(plan: Plan, reason: str | None) -> tuple[Plan, str]:
    """The plan without its network faults when ``reason`` says why no network namespace
    can be made, and the message that says so; the plan as it is otherwise."""
    if reason is None:
        return plan, ""
    kept = tuple(fault for fault in plan.faults if not fault.network)
    return replace(plan, faults=kept), f"The network faults are skipped: {reason}."


def chosen(plan: Plan, labels: Sequence[str] | None) -> Plan:
    """The plan with only the faults labelled ``labels``, all of them without."""
    if not labels:
        return plan
    picked = tuple(fault for fault in plan.faults if fault.label in labels)
    if not picked:
        raise SystemExit(f"none of {', '.join(labels)} is in this plan")
    return replace(plan, faults=picked)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.chaos", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="three short faults, under a minute")
    parser.add_argument(
        "--fault",
        action="append",
        choices=sorted({fault.label for fault in (*FULL.faults, *SMOKE.faults)}),
        help="only this fault of the plan (repeatable); the page shows only these",
    )
    add_worker_options(parser)
    parser.add_argument(
        "--output", type=Path, default=report.DOCS, help="folder of chaos.md and its plots"
    )
    args = parser.parse_args(argv)
    plan = chosen(SMOKE if args.smoke else FULL, args.fault)
    reason = unavailable_reason() if any(fault.network for fault in plan.faults) else None
    plan, skipped = network_faults_skipped(plan, reason)
    if skipped:
        print(skipped, file=sys.stderr)

    args.output.mkdir(parents=True, exist_ok=True)
    command = "python -m harness.chaos" + (" --smoke" if plan.smoke else "")
    runs = [run_and_judge(plan, workers, args.output, command) for workers in workers_chosen(args)]
    page = report.write_page(
        "chaos",
        "Chaos: the example app under load while things fail",
        page_body(runs, skipped),
        command,
        folder=args.output,
    )
    print(f"Wrote {page} and its plots {', '.join(judged.plot_name for judged in runs)}")

    missed = []
    for judged in runs:
        label = judged.run.workers.label
        missed += [f"{m} ({label})" for r in judged.results for m in r.wrong()]
        if not whole_run(judged.run).clean:
            missed.append(f"the whole run with {label}: a 500, a traceback or an error body")
    if missed:
        print(f"Targets of correctness missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
