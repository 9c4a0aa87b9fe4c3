"""``make overload``: one app at three times its capacity, without the extension and with it.

The app (:mod:`harness.overload_app`: a view that reads PostgreSQL and hashes
what it read) is served by gunicorn with 4 sync workers. The harness first
finds its capacity, without the extension: the highest rate at which an
open-loop load (:mod:`harness.openloop`) is answered 2xx throughout with a p99
under 500 ms. It then offers three times that rate for 60 s, first to the
plain app, then to the same app with the extension set up for production
(load shedding on the ``X-Request-Start`` stamp, a deadline on database work,
rate limits per client in Redis). From the moment the load stops a steady
probe measures how long each takes to answer promptly again.

PostgreSQL and Redis are the servers at ``--database-url`` and ``--redis-url``
(``OVERLOAD_DATABASE_URL`` and ``OVERLOAD_REDIS_URL``, by default the
``test`` database on 127.0.0.1:5432 and Redis on 127.0.0.1:6379). The harness
makes a table of its own there and drops it at the end.

It prints the table, writes ``docs/overload.md`` and ``docs/overload.png``, and
exits 1 when a target is missed. ``--smoke`` runs every part in a few seconds
and judges nothing; ``--output DIR`` writes the page and the plot to ``DIR``.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psycopg

from bench.report import load_average
from harness import openloop, report
from harness.openloop import FAILED, TIMED_OUT, Result
from harness.overload_app import QUERY_WAIT
from harness.stack import BIN, ROOT
from harness.traffic import percentile
from tests.support.servers import LOCALHOST, free_port, gunicorn_options, wait_until

PAGE = "overload"
WORKERS = 4
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
ROWS = 20_000
PATH = "/work"

P99_CAPACITY_LIMIT = 0.5
"""Seconds: a rate is served when every answer is 2xx and the p99 is under this."""
OVERLOAD_FACTOR = 3
MAX_QUEUE_TIME = 1.0
"""``RESILIENCE_MAX_QUEUE_TIME``: the value the README recommends."""
REQUEST_TIMEOUT = 2.0
"""``RESILIENCE_REQUEST_TIMEOUT``: database work of a request ends within 2 s."""
RATE_LIMIT = "600 per minute"
"""``RATELIMIT_APPLICATION``, per client: the load's clients each send a few a second."""

GOODPUT_SHARE = 0.9
P99_LIMIT = 1.5
RECOVERY_LIMIT = 5.0
RECOVERY_BUCKET = 1.0
PROBE_RATE = 20.0

MODES = (("plain", "plain app"), ("resilient", "with the extension"))


@dataclass(frozen=True)
class Plan:
    first_rate: float
    step_seconds: float
    max_steps: int
    pause: float
    seconds: float
    probe_seconds: float
    smoke: bool = False

    @classmethod
    def full(cls) -> Plan:
        return cls(40, 5, 8, 3, 60, 30)

    @classmethod
    def quick(cls) -> Plan:
        return cls(10, 1, 2, 0.5, 3, 3, smoke=True)

    def command(self) -> str:
        return "python -m harness.overload --smoke" if self.smoke else "make overload"


# -- the servers and the app ----------------------------------------------------------


@dataclass(frozen=True)
class Servers:
    database_url: str
    redis_url: str
    table: str

    def app_environment(self, mode: str) -> dict[str, str]:
        return {
            **os.environ,
            "OVERLOAD_MODE": mode,
            "OVERLOAD_DATABASE_URL": self.database_url.replace(
                "postgresql://", "postgresql+psycopg://", 1
            ),
            "OVERLOAD_TABLE": self.table,
            "OVERLOAD_REDIS_URL": self.redis_url,
            "OVERLOAD_SECRET_KEY": secrets.token_hex(32),
            "OVERLOAD_MAX_QUEUE_TIME": str(MAX_QUEUE_TIME),
            "OVERLOAD_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
            "OVERLOAD_RATE_LIMIT": RATE_LIMIT,
            "PYTHONPATH": str(ROOT),
        }


@contextmanager
def table_of_documents(database_url: str) -> Iterator[str]:
    """A table of :data:`ROWS` documents in categories, dropped on the way out."""
    name = f"overload_documents_{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(
            f"CREATE TABLE {name} (id serial PRIMARY KEY, category int NOT NULL,"
            " title text NOT NULL, score double precision NOT NULL)"
        )
        try:
            connection.execute(
                f"INSERT INTO {name} (category, title, score)"
                " SELECT n %% 50, 'document ' || n, random() FROM generate_series(1, %s) n",
                (ROWS,),
            )
            connection.execute(f"CREATE INDEX ON {name} (category, score)")
            connection.execute(f"ANALYZE {name}")
            yield name
        finally:
            connection.execute(f"DROP TABLE IF EXISTS {name}")


def check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    finally:
        client.close()


@contextmanager
def served(servers: Servers, mode: str, log: Path) -> Iterator[int]:
    """Gunicorn with 4 sync workers serving the app in ``mode``; yields its port."""
    port = free_port()
    config = ["--config", str(ROOT / "harness" / "overload_gunicorn.py")] if mode != "plain" else []
    command = [
        str(BIN / "gunicorn"),
        *config,
        "--workers",
        str(WORKERS),
        "--worker-class",
        "sync",
        "--bind",
        f"{LOCALHOST}:{port}",
        *gunicorn_options(),
        "harness.overload_app:create_app()",
    ]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=servers.app_environment(mode),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        def answering() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log}")
            return all(result.ok for result in openloop.run(LOCALHOST, port, PATH, 20, 0.5))

        if not wait_until(answering, timeout=60, interval=0.5):
            raise RuntimeError(f"the {mode} app did not answer; see {log}")
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- figures ------------------------------------------------------------------------


def p99(results: Sequence[Result]) -> float:
    return percentile(sorted(r.latency for r in results), 99)


@dataclass(frozen=True)
class Step:
    rate: float
    results: list[Result]

    @property
    def served(self) -> bool:
        return all(r.ok for r in self.results) and p99(self.results) < P99_CAPACITY_LIMIT


def settle(port: int, limit: float = 30) -> None:
    """Wait until a request is answered promptly: the queue of the last step is gone."""
    wait_until(
        lambda: all(r.ok and r.latency < 0.1 for r in openloop.run(LOCALHOST, port, PATH, 5, 0.2)),
        timeout=limit,
        interval=0.2,
    )


def find_capacity(port: int, plan: Plan) -> list[Step]:
    """Double the rate until a step is not served, then halve the gap between the two."""
    steps: list[Step] = []
    good, bad = 0.0, math.inf
    rate = plan.first_rate
    while len(steps) < plan.max_steps:
        step = Step(rate, openloop.run(LOCALHOST, port, PATH, rate, plan.step_seconds))
        steps.append(step)
        print(f"capacity search: {rate:g}/s {'served' if step.served else 'not served'}")
        if step.served:
            good = rate
        else:
            bad = rate
        if bad - good <= max(5.0, 0.1 * good):
            break
        rate = rate * 2 if math.isinf(bad) else round((good + bad) / 2)
        time.sleep(plan.pause)
        settle(port)
    if good == 0:
        raise RuntimeError(f"not even {min(s.rate for s in steps):g} requests/s were served")
    return steps


def capacity(steps: Sequence[Step]) -> float:
    return max(step.rate for step in steps if step.served)


@dataclass(frozen=True)
class Run:
    mode: str
    rate: float
    seconds: float
    start: float
    stop: float
    load: list[Result]
    probe: list[Result]

    def successes(self) -> list[Result]:
        return [r for r in self.load if r.ok]

    @property
    def goodput(self) -> float:
        """2xx answers per second that arrived while the load ran."""
        return sum(1 for r in self.load if r.ok and r.end <= self.stop) / self.seconds

    def latency(self, percent: float) -> float:
        return percentile(sorted(r.latency for r in self.successes()), percent)

    def count(self, status: int) -> int:
        return sum(1 for r in self.load if r.status == status)

    @property
    def server_errors(self) -> int:
        return sum(1 for r in self.load if r.status >= 500)

    @property
    def shed(self) -> int:
        return sum(1 for r in self.load if r.status == 503 and r.retry_after)

    @property
    def other_failures(self) -> int:
        """4xx answers, the 429s of rate limits among them."""
        return sum(1 for r in self.load if 300 <= r.status < 500)

    @property
    def recovery(self) -> float | None:
        """Seconds after the load stopped from which every probe bucket is 2xx under 500 ms."""
        buckets = math.ceil(
            (max(r.scheduled for r in self.probe) - self.stop + 1e-9) / RECOVERY_BUCKET
        )
        by_bucket: list[list[Result]] = [[] for _ in range(max(buckets, 1))]
        for r in self.probe:
            index = min(int((r.scheduled - self.stop) / RECOVERY_BUCKET), len(by_bucket) - 1)
            by_bucket[max(index, 0)].append(r)
        recovered: float | None = None
        for index, bucket in enumerate(by_bucket):
            good = all(r.ok for r in bucket) and p99(bucket) < P99_CAPACITY_LIMIT
            if not good:
                recovered = None
            elif recovered is None:
                recovered = index * RECOVERY_BUCKET
        return recovered


def overload(servers: Servers, mode: str, rate: float, plan: Plan, log: Path) -> Run:
    with served(servers, mode, log) as port:
        settle(port)
        start = time.time()
        stop, load, probe = openloop.run_with_probe(
            LOCALHOST, port, PATH, rate, plan.seconds, PROBE_RATE, plan.probe_seconds
        )
    return Run(mode, rate, plan.seconds, start, stop, load, probe)


@dataclass(frozen=True)
class Measured:
    plan: Plan
    steps: list[Step]
    runs: dict[str, Run]
    load_before: str
    load_after: str

    @property
    def capacity(self) -> float:
        return capacity(self.steps)


def measure(plan: Plan, database_url: str, redis_url: str, folder: Path) -> Measured:
    check_redis(redis_url)
    load_before = load_average()
    with table_of_documents(database_url) as table:
        servers = Servers(database_url, redis_url, table)
        log = folder / "gunicorn.log"
        with served(servers, "plain", log) as port:
            steps = find_capacity(port, plan)
        rate = OVERLOAD_FACTOR * capacity(steps)
        runs = {}
        for mode, _ in MODES:
            print(f"overload: {rate:g}/s for {plan.seconds:g} s, {mode}")
            runs[mode] = overload(servers, mode, rate, plan, log)
    return Measured(plan, steps, runs, load_before, load_average())


# -- the table, the page and the plot -----------------------------------------------------


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


@dataclass(frozen=True)
class Row:
    measure: str
    plain: str
    resilient: str
    target: str
    met: bool | None
    """None: not judged (the plain app's figures, and everything in a smoke run)."""


def rows(measured: Measured) -> list[Row]:
    plain, resilient = measured.runs["plain"], measured.runs["resilient"]
    cap = measured.capacity
    judge = not measured.plan.smoke

    def judged(met: bool) -> bool | None:
        return met if judge else None

    def recovered(run: Run) -> str:
        seconds = run.recovery
        return (
            f"not within {measured.plan.probe_seconds:g} s"
            if seconds is None
            else f"{seconds:.1f} s"
        )

    def lag(run: Run) -> str:
        lags = sorted(r.lag for r in run.load)
        return f"{milliseconds(percentile(lags, 99))} / {milliseconds(max(lags, default=0))}"

    return [
        Row(
            "Offered (open loop)", f"{plain.rate:g}/s", f"{resilient.rate:g}/s", "3x capacity", None
        ),
        Row(
            "Goodput (2xx per second)",
            f"{plain.goodput:.1f}/s",
            f"{resilient.goodput:.1f}/s",
            f">= {GOODPUT_SHARE * cap:.1f}/s (90% of capacity)",
            judged(resilient.goodput >= GOODPUT_SHARE * cap),
        ),
        Row(
            "p50 of successes",
            milliseconds(plain.latency(50)),
            milliseconds(resilient.latency(50)),
            "-",
            None,
        ),
        Row(
            "p99 of successes",
            milliseconds(plain.latency(99)),
            milliseconds(resilient.latency(99)),
            f"<= {P99_LIMIT * 1000:,.0f} ms",
            judged(bool(resilient.successes()) and resilient.latency(99) <= P99_LIMIT),
        ),
        Row("5xx answers", str(plain.server_errors), str(resilient.server_errors), "-", None),
        Row("503 with Retry-After", str(plain.shed), str(resilient.shed), "-", None),
        Row("4xx answers", str(plain.other_failures), str(resilient.other_failures), "-", None),
        Row(
            f"Client timeouts ({openloop.TIMEOUT:g} s)",
            str(plain.count(TIMED_OUT)),
            str(resilient.count(TIMED_OUT)),
            "0",
            judged(resilient.count(TIMED_OUT) == 0),
        ),
        Row(
            "Connections failed",
            str(plain.count(FAILED)),
            str(resilient.count(FAILED)),
            "-",
            None,
        ),
        Row(
            "Generator behind schedule, p99 / max",
            lag(plain),
            lag(resilient),
            "-",
            None,
        ),
        Row(
            "Recovery after the load stops",
            recovered(plain),
            recovered(resilient),
            f"<= {RECOVERY_LIMIT:g} s",
            judged(resilient.recovery is not None and resilient.recovery <= RECOVERY_LIMIT),
        ),
    ]


def verdict(row: Row) -> str:
    if row.target == "-" or row.target.startswith("3x"):
        return "-"
    return "not judged" if row.met is None else report.verdict(row.met)


def results_table(found: Sequence[Row]) -> str:
    header = ("Measure", "plain app", "with the extension", "target (with the extension)", "met")
    return report.table(
        header, [(r.measure, r.plain, r.resilient, r.target, verdict(r)) for r in found]
    )


def steps_table(steps: Sequence[Step]) -> str:
    return report.table(
        ("rate offered", "answered 2xx", "p99", "served"),
        [
            (
                f"{s.rate:g}/s",
                f"{sum(r.ok for r in s.results)} of {len(s.results)}",
                milliseconds(p99(s.results)),
                "yes" if s.served else "no",
            )
            for s in steps
        ],
    )


def per_second(times: Sequence[float], origin: float, seconds: int) -> list[int]:
    counts = [0] * seconds
    for moment in times:
        index = int(moment - origin)
        if 0 <= index < seconds:
            counts[index] += 1
    return counts


def plot(measured: Measured, path: Path) -> None:
    # The object API draws with Agg without choosing pyplot's global backend.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(14, 9), layout="constrained")
    axes = figure.subplots(2, 2, sharex=True, sharey="row")
    cap = measured.capacity
    for column, (mode, label) in enumerate(MODES):
        run = measured.runs[mode]
        results = [*run.load, *run.probe]
        seconds = math.ceil(max(r.end for r in results) - run.start) + 1
        xs = list(range(seconds))
        rates, latency = axes[0][column], axes[1][column]
        series = (
            ("offered", [r.scheduled for r in results], "#1f77b4"),
            ("answered 2xx", [r.end for r in results if r.ok], "#4c9a2a"),
            ("503 with Retry-After", [r.end for r in results if r.retry_after], "#e07000"),
            (
                "other failures",
                [r.end for r in results if not r.ok and not r.retry_after],
                "#c00000",
            ),
        )
        for name, times, colour in series:
            rates.step(
                xs, per_second(times, run.start, seconds), where="post", label=name, color=colour
            )
        rates.axhline(cap, color="0.3", linestyle=":", label=f"capacity {cap:g}/s")
        rates.set_title(f"{label}: {run.rate:g}/s offered for {run.seconds:g} s")
        rates.set_ylabel("requests per second")
        by_second: list[list[float]] = [[] for _ in xs]
        for r in results:
            if r.ok:
                by_second[min(int(r.scheduled - run.start), seconds - 1)].append(r.latency)
        points = [(x, percentile(sorted(v), 99)) for x, v in zip(xs, by_second, strict=True) if v]
        latency.plot(
            [x for x, _ in points],
            [y * 1000 for _, y in points],
            color="#1f77b4",
            label="p99 of successes, by second sent",
        )
        latency.axhline(
            P99_LIMIT * 1000, color="red", linestyle=":", label=f"target {P99_LIMIT * 1000:,.0f} ms"
        )
        latency.axhline(P99_CAPACITY_LIMIT * 1000, color="0.3", linestyle=":", label="500 ms")
        latency.set_yscale("log")
        latency.set_ylabel("latency (ms)")
        latency.set_xlabel("seconds since the load started")
        for panel in (rates, latency):
            stop = run.stop - run.start
            panel.axvline(stop, color="0.5", label="load stops")
            if run.recovery is not None:
                panel.axvspan(stop, stop + run.recovery, color="0.9", label="until recovered")
            panel.grid(alpha=0.3)
    for panel in axes[:, 1]:
        panel.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.savefig(path, dpi=100)


def page(measured: Measured, found: Sequence[Row], plot_name: str) -> str:
    plan = measured.plan
    smoke = (
        "\nThis is a smoke run: a few seconds of each part, too short to judge a target.\n"
        if plan.smoke
        else ""
    )
    return f"""\
An app of one view that reads twenty rows of a {ROWS:,}-row PostgreSQL table by an
index, in a statement that also waits {QUERY_WAIT * 1000:g} ms in the server (`pg_sleep`, the
time a query doing real I/O takes: the workers, not the two cores, are the
bottleneck, as in most apps on sync workers), and hashes the rows (a few
milliseconds of Python). It is served by gunicorn with
{WORKERS} sync workers and its default listen backlog, access log off. PostgreSQL, Redis,
gunicorn and the load generator share the machine's cores, and other work may run
on it too. Load average before the run {measured.load_before}; after it
{measured.load_after}, the run's own processes included.
{smoke}
## Method

The load is open loop: request *i* of a run at *r* per second is due at *i*/*r*
seconds and is sent then on a new connection, however many earlier ones are
still unanswered; a client gives up after {openloop.TIMEOUT:g} s. Its latency counts
from that scheduled moment, which it also carries as `X-Request-Start: t=<epoch
seconds>`, the stamp nginx or a cloud load balancer would add on arrival. The
requests come from {openloop.CLIENTS} client addresses in `X-Forwarded-For`, as behind one
proxy. Each client shuts its sending side once its request is out (it sends
nothing more) and closes as soon as its answer is in: gunicorn's sync worker
lingers after every answer until the client has closed (as RFC 9112 advises), and
a proxy in front ends that at once, where a Python client on the same two cores
took milliseconds, worker time no deployment spends.

1. **Capacity**, of the plain app: runs of {plan.step_seconds:g} s at a rate doubled from
   {plan.first_rate:g}/s until one is not served (every answer 2xx and p99 under
   {P99_CAPACITY_LIMIT * 1000:.0f} ms), then halving the gap. Capacity is the highest rate served:
   **{measured.capacity:g} requests/s**.
2. **Overload**: {OVERLOAD_FACTOR}x capacity for {plan.seconds:g} s, to the plain app, then to
   the same app with the extension: `RESILIENCE_MAX_QUEUE_TIME = {MAX_QUEUE_TIME:g}` (load
   shedding on the stamp), `RESILIENCE_REQUEST_TIMEOUT = {REQUEST_TIMEOUT:g}` (database work
   within 2 s), `RATELIMIT_APPLICATION = "{RATE_LIMIT}"` per client in Redis,
   `RESILIENCE_TRUSTED_PROXIES = 1`, and the gunicorn hooks. A fresh gunicorn serves each.
3. **Recovery**: from the moment the load stops, a probe sends {PROBE_RATE:g} requests/s
   for {plan.probe_seconds:g} s. Recovery is the start of the first second from which every
   second's probe requests are all 2xx with a p99 under {P99_CAPACITY_LIMIT * 1000:.0f} ms.

Goodput counts the 2xx answers that arrived while the load ran, per second of
load; the latency percentiles cover every successful request of the load,
answered during it or after.

## Results

{results_table(found)}

The targets apply to the run with the extension; the plain app's figures are as
measured. "Generator behind schedule" is how late the generator itself sent its
requests (the stamp and the latency still count from the schedule).

How to read them: the plain app's queue (gunicorn's listen backlog) fills
within seconds; from then on most requests wait until the client gives up, and
a worker still serves each one it accepts, for a client that has gone. With the
extension a request that waited more than {MAX_QUEUE_TIME:g} s is answered 503 at once, so
the queue stays about {MAX_QUEUE_TIME:g} s long: the requests served waited just under
that, and none waits until its client gives up. Each 503 still costs a worker an
accepted connection, a request parsed by gunicorn and the refusal (answered before
Flask, with its problem document and its log line), and every offered request
costs the generator a connection, on the same cores: the more of the machine that
takes, the fewer requests the workers serve, and the longer each served request
takes. A served request costs more with the extension too: its rate limit in Redis
(a round trip to count it, two more to read the window for the `X-RateLimit-*`
headers) and the pool's pre-ping, so that with every worker busy the app with the
extension serves fewer requests a second than the plain app at its capacity.

![Offered and answered requests per second, and the p99 of successes, for both runs]({plot_name})

### Capacity search

{steps_table(measured.steps)}
"""


# -- the command ------------------------------------------------------------------------


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.overload", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every part in a few seconds")
    parser.add_argument(
        "--output", type=Path, default=report.DOCS, help="folder of overload.md and overload.png"
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("OVERLOAD_DATABASE_URL", DATABASE_URL)
    )
    parser.add_argument("--redis-url", default=os.environ.get("OVERLOAD_REDIS_URL", REDIS_URL))
    return parser.parse_args(argv)


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the context managers: gunicorn stops, the table goes.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    options = arguments(argv)
    plan = Plan.quick() if options.smoke else Plan.full()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    options.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flask-resilience-overload-") as folder:
        try:
            measured = measure(plan, options.database_url, options.redis_url, Path(folder))
        except RuntimeError:
            log = Path(folder) / "gunicorn.log"
            if log.exists():
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
    found = rows(measured)
    print(f"capacity {measured.capacity:g}/s; load average {measured.load_after}")
    print(results_table(found))
    plot(measured, options.output / f"{PAGE}.png")
    written = report.write_page(
        PAGE,
        "Overload: three times capacity, without the extension and with it",
        page(measured, found, f"{PAGE}.png"),
        plan.command(),
        folder=options.output,
    )
    print(f"\nWrote {written} and {PAGE}.png")
    return 1 if any(row.met is False for row in found) else 0


if __name__ == "__main__":
    sys.exit(main())
