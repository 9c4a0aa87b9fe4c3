"""``make loadtest``: the example app at 50, 100, 200 and 500 concurrent users.

Each level is a fresh locust run against the same stack: the users log in
(every one of them at the start, the way a morning rush does), then work
through the API; two load balancers poll readiness. After each level the
harness measures how long the app takes to answer every endpoint promptly
again, once the load has dropped.

``--smoke`` runs one small level in a few seconds, for the test suite. Each worker
class of ``--worker-class`` (by default sync, then gthread) has the levels on a
fresh stack of its own, and a table of its own on the page.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.probe import Prober
from harness.report import DOCS, table, verdict, write_page
from harness.stack import (
    MAX_QUEUE_TIME,
    REQUEST_TIMEOUT,
    Stack,
    Workers,
    add_worker_options,
    wait_seconds,
    workers_chosen,
)
from harness.traffic import Load, Request, Summary, summarize

LEVELS = (50, 100, 200, 500)
STEADY_SECONDS = 60
"""How long each level runs once all its users have arrived."""
SPAWN_RATE = 5
"""Users arriving per second: 200 users arrive over 40 s, 500 over 100 s."""

RECOVERY_LIMIT = 10.0
DATABASE_P95_LIMIT = 500.0
ALLOWED_UNDER_OVERLOAD = frozenset({"429", "503"})
"""What the design answers when it cannot serve: too many requests, or not now."""


@dataclass(frozen=True)
class Level:
    users: int
    overall: Summary
    database: Summary
    login: Summary
    steady_database: Summary
    """The API once every user has arrived: the rush of logins is over."""
    recovery: float | None

    def server_errors(self) -> int:
        """5xx answers plus requests that got no answer at all."""
        return self.overall.count("5") + self.unanswered()

    def unanswered(self) -> int:
        return sum(
            count
            for status, count in self.overall.statuses.items()
            if not status[0].isdigit() or status == "0"
        )

    def unexpected_under_overload(self) -> int:
        return sum(
            count
            for status, count in self.overall.statuses.items()
            if not status.startswith(("2", "3")) and status not in ALLOWED_UNDER_OVERLOAD
        )


def is_database_endpoint(request: Request) -> bool:
    return request.name.startswith("/api/")


def run_level(stack: Stack, prober: Prober, users: int, steady_seconds: float) -> Level:
    log = stack.folder / f"requests-{users}.csv"
    arrival = users / SPAWN_RATE
    seconds = arrival + steady_seconds
    load = Load(stack.url, users, seconds, log, spawn_rate=SPAWN_RATE)
    try:
        load.wait()
    finally:
        load.stop()
    recovery = wait_seconds(prober.all_healthy, timeout=60)
    requests = load.requests()
    api = [r for r in requests if is_database_endpoint(r)]
    steady_from = load.started + arrival
    return Level(
        users=users,
        overall=summarize(requests, seconds),
        database=summarize(api, seconds),
        login=summarize((r for r in requests if r.name == "/login [POST]"), seconds),
        steady_database=summarize((r for r in api if r.start >= steady_from), steady_seconds),
        recovery=recovery,
    )


def run(levels: tuple[int, ...], seconds: float, workers: Workers) -> list[Level]:
    with Stack(workers) as stack:
        prober = Prober(stack)
        if not prober.log_in():
            raise RuntimeError("the probe could not log in")
        results = []
        for users in levels:
            results.append(run_level(stack, prober, users, seconds))
            print(
                f"{workers.label}, {users} users: {results[-1].overall.requests} requests",
                file=sys.stderr,
            )
        return results


def milliseconds(value: float) -> str:
    return f"{value:,.0f} ms"


def results_table(levels: list[Level]) -> str:
    rows = [
        (
            level.users,
            level.overall.requests,
            f"{level.overall.throughput:.1f}",
            level.overall.failures(),
            milliseconds(level.overall.p50),
            milliseconds(level.overall.p95),
            milliseconds(level.overall.p99),
            milliseconds(level.database.p95),
            milliseconds(level.steady_database.p95),
            milliseconds(level.login.p95),
            "-" if level.recovery is None else f"{level.recovery:.1f} s",
        )
        for level in levels
    ]
    header = (
        "users",
        "requests",
        "req/s",
        "failures by status",
        "p50",
        "p95",
        "p99",
        "API p95",
        "API p95, all arrived",
        "login p95",
        "recovery",
    )
    return table(header, rows)


def targets(levels: list[Level]) -> list[tuple[str, str, bool]]:
    """(target, figure, met) for every target the levels that ran can answer."""
    checks = []
    for level in levels:
        if level.users <= 200:
            errors = level.server_errors()
            checks.append((f"no 5xx at {level.users} users", f"{errors} 5xx", errors == 0))
        else:
            unexpected = level.unexpected_under_overload()
            checks.append(
                (
                    f"only 429/503 at {level.users} users",
                    f"{unexpected} other failures",
                    unexpected == 0,
                )
            )
            recovered = level.recovery is not None and level.recovery <= RECOVERY_LIMIT
            figure = "none in 60 s" if level.recovery is None else f"{level.recovery:.1f} s"
            checks.append((f"recovery within 10 s after {level.users} users", figure, recovered))
        if level.users == 200:
            for label, summary in (
                ("whole level", level.database),
                ("once all users arrived", level.steady_database),
            ):
                met = summary.p95 < DATABASE_P95_LIMIT
                checks.append(
                    (f"API p95 < 500 ms at 200 users, {label}", milliseconds(summary.p95), met)
                )
    return checks


def run_section(workers: Workers, levels: list[Level]) -> str:
    checks = targets(levels)
    return f"""\
## {workers.label}

{results_table(levels)}

Targets:

{table(("target", "figure", "result"), [(n, f, verdict(m)) for n, f, m in checks])}
"""


def page_body(runs: Sequence[tuple[Workers, list[Level]]], seconds: float) -> str:
    servers = ", then ".join(workers.label for workers, _ in runs)
    each = ", each on a fresh stack of its own," if len(runs) > 1 else ""
    sections = "\n".join(run_section(workers, levels) for workers, levels in runs)
    return f"""\
The example app under gunicorn (its `gunicorn.conf.py` with the hooks) with
{servers}{each} on a throwaway PostgreSQL and Redis on loopback, loaded by locust in
headless mode. At each level users arrive {SPAWN_RATE} a second, and the level goes on
{seconds:.0f} s after the last has arrived. Each user logs in through the form
(scrypt: about 90 ms of CPU), then lists documents, opens one, reads the
statistics, checks who it is and uploads a small file, one to three seconds
apart. Locust, PostgreSQL and Redis run on the same machine as the app. Two
load balancers poll `/health/ready` once a second. Each user sends its own
`X-Forwarded-For` address, which the app trusts from one proxy, so rate limits
apply per user as they would behind a load balancer, and an `X-Request-Start`
stamp: a request that waited more than {MAX_QUEUE_TIME} s for a worker is answered 503 at
once (`RESILIENCE_MAX_QUEUE_TIME`). Database work has a {REQUEST_TIMEOUT} s deadline
(`RESILIENCE_REQUEST_TIMEOUT`).

Percentiles cover every request of the level, the rush of logins included;
"API" is the `/api/*` endpoints (each reads the database), "API, all arrived"
the same once every user of the level has arrived, "login" the form posts.
Recovery is the time, after the load stops, until `/health/live`,
`/health/ready`, `/api/documents`, `/api/stats` and `/api/me` all answer 200
within a second.

{sections}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.loadtest", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one level of 10 users for 10 s")
    add_worker_options(parser)
    parser.add_argument("--output", type=Path, default=DOCS, help="folder for load.md")
    arguments = parser.parse_args(argv)
    levels, seconds = ((10,), 8.0) if arguments.smoke else (LEVELS, float(STEADY_SECONDS))

    runs = []
    met = True
    for workers in workers_chosen(arguments):
        results = run(levels, seconds, workers)
        runs.append((workers, results))
        print(workers.label)
        print(results_table(results))
        for name, figure, target_met in targets(results):
            print(f"{verdict(target_met):>6}  {name}: {figure}")
            met = met and target_met
    command = "python -m harness.loadtest --smoke" if arguments.smoke else "make loadtest"
    path = write_page(
        "load", "Load test", page_body(runs, seconds), command, folder=arguments.output
    )
    print(f"written to {path}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
