"""The faults of the chaos run: how each is injected into a running stack and undone.

Each fault's ``inject`` breaks something, holds it broken, puts it right again
and returns the times of both; what the harness itself opened for the fault (a
connection holding a lock, the connections filling PostgreSQL) is closed on
the way out, whatever happens. A server the fault stopped is started again by
the fault, or cleaned up with the stack if the run is interrupted. The network
faults degrade the stack's link to PostgreSQL (:mod:`harness.network`) and make
it clean again; the link goes with the stack.
"""

from __future__ import annotations

import enum
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

import psycopg
import requests

from harness.probe import Prober
from harness.stack import Stack
from tests.support.servers import LOCALHOST, libpq_conninfo, wait_until

DOCUMENTS_TABLE = "document"
TERMINATE_APP_BACKENDS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE datname = 'documents' AND pid <> pg_backend_pid()"
)
APP_BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'documents'"
TOO_MANY_CLIENTS = "53300"
"""SQLSTATE of "sorry, too many clients already"."""

REPLACEMENT_TIMEOUT = 60.0
UPLOADER = "alice@acme.test"
"""An account that may upload: its uploads are in flight at the signals."""
IN_FLIGHT = 2


class Expect(enum.Enum):
    """What the health endpoints should say while a fault lasts."""

    DATABASE_DOWN = "ready 503 at least once while the database is unreachable; live 200"
    DATABASE_UP = "the database answers: ready never 503; live 200"
    REDIS_DOWN = "rate limits fail open: ready 200 throughout; live 200"
    PROCESSES_REPLACED = "the other workers serve: ready and live 200 throughout"
    SHUTDOWN = "no ready 200 once the shutdown began; live may go with the process"
    DATABASE_SLOW = (
        "the readiness check's round trips outlast its 1 s timeout: ready 503 at least once"
        " while the link is slow; live 200"
    )
    DATABASE_LOSSY = (
        "the database answers, late when a packet is lost: ready 200 at least once,"
        " otherwise 503, every poll answered; live 200"
    )


@dataclass
class Injection:
    """When a fault began and when what it broke was back (epoch seconds)."""

    injected: float
    returned: float
    notes: list[str] = field(default_factory=list)
    replaced: set[int] = field(default_factory=set)
    """Workers that the fault ended and gunicorn must replace."""
    failed: list[str] = field(default_factory=list)
    """What went wrong beyond the figures, a missed target each (the server stopped)."""
    in_flight: list[int] = field(default_factory=list)
    """Statuses of the harness's own requests in flight at a signal (0: no answer)."""


@dataclass(frozen=True)
class Fault:
    name: str
    label: str
    how: str
    expect: Expect
    inject: Callable[[Stack], Injection]
    lossless: bool = False
    """Target: no request lost (a graceful reload or shutdown)."""
    aftermath: Callable[[Stack, Injection], None] | None = None
    """Waits, once recovery is measured, for what follows (workers replaced) and notes it."""
    why: str = ""
    """How the app and the server deal with it, for the reader of the figures."""
    network: bool = False
    """Degrades the link to PostgreSQL: needs the stack's network namespace."""


# -- PostgreSQL -----------------------------------------------------------------


def postgres_stopped(seconds: float) -> Fault:
    def inject(stack: Stack) -> Injection:
        injected = time.time()
        stack.postgres.stop()
        time.sleep(seconds)
        stack.postgres.start()
        return Injection(injected, time.time())

    return Fault(
        f"PostgreSQL stopped {seconds:g} s",
        "PostgreSQL stopped",
        f"`pg_ctl stop -m fast`, {seconds:g} s down, `pg_ctl start` (same port and data).",
        Expect.DATABASE_DOWN,
        inject,
        why=(
            "Every query fails at once (connection refused): the users get 503 problems with"
            " Retry-After, readiness turns 503 once each worker's cached check result (5 s)"
            " has expired, and `pool_pre_ping` reconnects on the first request afterwards."
        ),
    )


def connections_killed() -> Fault:
    def inject(stack: Stack) -> Injection:
        with _connect(stack.database_url) as connection:
            injected = time.time()
            killed = connection.execute(TERMINATE_APP_BACKENDS).fetchall()
        return Injection(injected, injected, [f"{len(killed)} app backends terminated"])

    return Fault(
        "PostgreSQL connections killed",
        "connections killed",
        f"`{TERMINATE_APP_BACKENDS}`, from a psycopg connection of the harness.",
        Expect.DATABASE_UP,
        inject,
        why=(
            "`pool_pre_ping` replaces a dead connection when a request checks it out; a"
            " request whose connection dies after its last query is still answered (the"
            " session is closed without raising)."
        ),
    )


def table_locked(seconds: float) -> Fault:
    def inject(stack: Stack) -> Injection:
        with _connect(stack.database_url, autocommit=False) as connection:
            connection.execute("SET lock_timeout = '10s'")
            injected = time.time()
            connection.execute(f"LOCK TABLE {DOCUMENTS_TABLE} IN ACCESS EXCLUSIVE MODE")
            locked = time.time()
            time.sleep(seconds)
            connection.rollback()
        return Injection(injected, time.time(), [f"lock granted after {locked - injected:.2f} s"])

    return Fault(
        f"query slowed past the deadline ({seconds:g} s lock)",
        "table locked",
        f"`LOCK TABLE {DOCUMENTS_TABLE} IN ACCESS EXCLUSIVE MODE` held {seconds:g} s in an open"
        " transaction of the harness: every query of the documents waits on it.",
        Expect.DATABASE_UP,
        inject,
        why=(
            "Statements waiting on the lock are cancelled at the 2 s request deadline (504)."
            " `/api/stats` has a 10 s budget and waits the lock out. With sync workers, while"
            " every worker waits, nothing else is answered, `/health/live` included; users'"
            " requests that waited more than 1 s for a worker are then shed (503). With"
            " gthread workers, the views of the documents share a bulkhead of 3 slots per"
            " worker (the example app's `RESILIENCE_BULKHEAD_MAX_CONCURRENT`): once they are"
            " taken, those views wait 0.25 s for one and then answer 503, and each worker's"
            " fourth thread answers the health probes and the other views."
        ),
    )


def slots_exhausted(seconds: float) -> Fault:
    def inject(stack: Stack) -> Injection:
        # Held from a database of their own, so that the app's are told apart.
        admin_url = stack.postgres.url_for("postgres")
        with ExitStack() as held, _connect(admin_url) as control:
            injected = time.time()
            limit = int(str(_scalar(control, "SHOW max_connections")))
            opened = _fill(admin_url, held, limit)
            terminated = 0
            # The app may win a freed slot back before the harness does: repeat.
            for _ in range(5):
                terminated += len(control.execute(TERMINATE_APP_BACKENDS).fetchall())
                wait_until(lambda: _scalar(control, APP_BACKENDS) == 0, timeout=2)
                opened += _fill(admin_url, held, limit)
                if _scalar(control, APP_BACKENDS) == 0:
                    break
            notes = [
                f"max_connections {limit}; the harness held {opened + 1} connections,"
                f" {terminated} app backends terminated"
            ]
            time.sleep(seconds)
        return Injection(injected, time.time(), notes)

    return Fault(
        f"connection slots exhausted {seconds:g} s",
        "slots exhausted",
        "The harness opens connections until PostgreSQL refuses more (too many clients),"
        f" terminates the app's, takes their slots too, holds them {seconds:g} s, closes them."
        " Sync workers never run their own pool dry, so the server's slots are what runs out.",
        Expect.DATABASE_DOWN,
        inject,
        why=(
            "The app's workers cannot reconnect (too many clients): 503 problems, readiness"
            " 503, until the harness lets go of the slots."
        ),
    )


def _connect(url: str, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(libpq_conninfo(url), autocommit=autocommit, connect_timeout=5)


def _scalar(connection: psycopg.Connection[tuple[object, ...]], query: str) -> object:
    row = connection.execute(query).fetchone()
    assert row is not None
    return row[0]


def _fill(url: str, held: ExitStack, limit: int) -> int:
    """Open connections until PostgreSQL refuses one; how many were opened."""
    opened = 0
    for _ in range(limit):
        try:
            held.enter_context(_connect(url))
        except psycopg.OperationalError as error:
            if TOO_MANY_CLIENTS not in str(error) and "too many clients" not in str(error):
                raise
            return opened
        opened += 1
    return opened


# -- the network between the app and PostgreSQL ---------------------------------------

ROUND_TRIPS = 5
"""``SELECT 1`` round trips the harness times on its own connection during a network fault."""


def network_delayed(delay: float, seconds: float) -> Fault:
    def inject(stack: Stack) -> Injection:
        return _degraded(stack, seconds, delay=delay)

    return Fault(
        f"network delayed {delay * 1000:g} ms, {seconds:g} s",
        "network delayed",
        f"Every packet from the app to PostgreSQL held {delay * 1000:g} ms on the link to the"
        f" database's network namespace (each round trip {delay * 1000:g} ms longer), for"
        f" {seconds:g} s; then the link is clean again.",
        Expect.DATABASE_SLOW,
        inject,
        why=(
            "Each statement is a round trip and a request makes several (the pool's ping,"
            " BEGIN, its queries, the rollback), so the 2 s deadline runs out between them:"
            " the next statement is refused or interrupted and the request answered 504. The"
            " server is never slow, so PostgreSQL's statement timeout never fires: the"
            " deadline is kept by the app. The readiness check's four round trips outlast"
            " its 1 s timeout: ready 503 once each worker's cached result has expired."
        ),
        network=True,
    )


def network_lossy(loss: float, seconds: float) -> Fault:
    def inject(stack: Stack) -> Injection:
        return _degraded(stack, seconds, loss=loss)

    return Fault(
        f"network losing {loss:.0%} of packets, {seconds:g} s",
        "network lossy",
        f"{loss:.0%} of the packets from the app to PostgreSQL dropped at random on the link"
        f" to the database's network namespace, for {seconds:g} s; then the link is clean"
        " again.",
        Expect.DATABASE_LOSSY,
        inject,
        why=(
            "TCP resends what was lost after a retransmission timeout, 200 ms at least"
            " (1 s for the SYN of a new connection): a request whose packet was lost is that"
            " much later, and most are answered in time. Readiness is 503 only when a lost"
            " packet made a check miss its 1 s timeout."
        ),
        network=True,
    )


def _degraded(stack: Stack, seconds: float, *, delay: float = 0.0, loss: float = 0.0) -> Injection:
    """The link degraded ``seconds``, with what the harness's own round trips took."""
    link = stack.link
    if link is None:
        raise RuntimeError("a network fault needs a stack made with network=True")
    dropped = link.dropped()
    with _connect(stack.database_url) as connection:
        injected = time.time()
        link.degrade(delay=delay, loss=loss)
        try:
            took = [_round_trip(connection) for _ in range(ROUND_TRIPS)]
            time.sleep(max(0.0, injected + seconds - time.time()))
        finally:
            link.restore()  # whatever happened, the next fault starts on a clean link
        returned = time.time()
        after = _round_trip(connection)
    notes = [
        f"the harness's `SELECT 1` took {_milliseconds(took)} during the fault,"
        f" {after * 1000:.1f} ms after it",
        f"{link.dropped() - dropped} packets toward PostgreSQL dropped",
    ]
    return Injection(injected, returned, notes)


def _round_trip(connection: psycopg.Connection[tuple[object, ...]]) -> float:
    started = time.perf_counter()
    connection.execute("SELECT 1").fetchone()
    return time.perf_counter() - started


def _milliseconds(durations: list[float]) -> str:
    return ", ".join(f"{duration * 1000:.0f}" for duration in durations) + " ms"


# -- Redis -----------------------------------------------------------------------


def redis_stopped(seconds: float) -> Fault:
    def inject(stack: Stack) -> Injection:
        injected = time.time()
        stack.redis.stop()
        # Long enough for the storage checks (2 s timeout) to have run against a dead Redis.
        time.sleep(seconds / 2)
        notes = _health_said(stack)
        time.sleep(seconds / 2)
        stack.redis.start()
        return Injection(injected, time.time(), notes)

    return Fault(
        f"Redis stopped {seconds:g} s",
        "Redis stopped",
        f"redis-server stopped (SIGTERM), {seconds:g} s down, started again (empty: no"
        " persistence, so the rate-limit counters start over).",
        Expect.REDIS_DOWN,
        inject,
        why=(
            "The rate limiter counts in memory while Redis is down and goes back to Redis"
            " when it returns; its storage check is not critical, so readiness stays 200."
        ),
    )


def _health_said(stack: Stack) -> list[str]:
    """What /health/ready and /health/detailed answered, in one line each."""
    try:
        ready = requests.get(stack.url + "/health/ready", timeout=5)
        detailed = requests.get(
            stack.url + "/health/detailed",
            headers={"Authorization": f"Bearer {stack.health_token}"},
            timeout=5,
        )
        said, body = ready.json(), detailed.json()
    except (requests.RequestException, ValueError) as error:
        return [f"health did not answer in JSON: {type(error).__name__}"]
    notes = [f"/health/ready said {ready.status_code} {said.get('status')!r}"]
    storage = body.get("checks", {}).get("ratelimit:storage", [{}])[0]
    limits = body.get("rate_limit", {})
    notes.append(
        f"/health/detailed said {detailed.status_code} {body.get('status')!r}, score"
        f" {body.get('score')}; its check ratelimit:storage {storage.get('status')!r},"
        f" rate_limit {limits.get('status')!r}, counting in memory:"
        f" {limits.get('counting_in_memory_fallback')}"
    )
    return notes


# -- gunicorn --------------------------------------------------------------------


def worker_killed() -> Fault:
    def inject(stack: Stack) -> Injection:
        victim = random.choice(stack.worker_pids())
        injected = time.time()
        os.kill(victim, signal.SIGKILL)
        return Injection(injected, injected, [f"worker {victim} killed"], replaced={victim})

    return Fault(
        "worker killed (SIGKILL)",
        "worker SIGKILL",
        "SIGKILL to one gunicorn worker, chosen at random; gunicorn forks a replacement.",
        Expect.PROCESSES_REPLACED,
        inject,
        why=(
            "The request the worker was serving, if any, is lost; the other workers serve on"
            " while gunicorn forks a replacement."
        ),
        aftermath=_workers_replaced,
    )


def worker_killed_while_postgres_down(seconds: float) -> Fault:
    def inject(stack: Stack) -> Injection:
        assert stack.gunicorn is not None
        injected = time.time()
        stack.postgres.stop()
        victim = random.choice(stack.worker_pids())
        os.kill(victim, signal.SIGKILL)
        time.sleep(seconds)
        stack.postgres.start()
        injection = Injection(injected, time.time(), [f"worker {victim} killed"], replaced={victim})
        if stack.gunicorn.poll() is not None:
            # The replacement refused to start and gunicorn stopped: start the app again
            # so that the run goes on, and say so.
            injection.failed.append("server stopped")
            injection.notes.append(f"gunicorn stopped with status {stack.gunicorn.returncode}")
            stack.start_app()
        return injection

    return Fault(
        f"worker killed while PostgreSQL is down ({seconds:g} s)",
        "worker killed, PostgreSQL down",
        f"PostgreSQL stopped, then SIGKILL to a worker: its replacement starts, startup"
        f" checks and all, while the database is down; PostgreSQL started after {seconds:g} s.",
        Expect.DATABASE_DOWN,
        inject,
        why=(
            "The replacement's startup checks find the database down; in a worker that"
            " replaces another they warn instead of refusing to start, which would make"
            " gunicorn stop the whole server."
        ),
        aftermath=_workers_replaced,
    )


class SlowUploads:
    """Uploads whose bodies are half sent when a signal comes: requests in flight, for sure.

    Users' requests last milliseconds, so whether one is in flight at the very moment
    of a signal is luck. These are: the worker has read their headers and waits in
    the middle of their bodies, which are finished after the signal.
    """

    def __init__(self, stack: Stack, count: int = IN_FLIGHT) -> None:
        self.stack = stack
        self.count = count
        self.connections: list[socket.socket] = []
        self.rests: list[bytes] = []

    def __enter__(self) -> SlowUploads:
        uploader = Prober(self.stack, UPLOADER)
        if not uploader.log_in():
            raise RuntimeError(f"{UPLOADER} could not log in")
        cookie = "; ".join(f"{c.name}={c.value}" for c in uploader.session.cookies)
        for _ in range(self.count):
            uploader.new_address()
            boundary = uuid.uuid4().hex
            body = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file";'
                f' filename="in-flight.txt"\r\nContent-Type: text/plain\r\n\r\n'
                f"{'Minutes of a meeting cut short by a signal.' * 50}\r\n--{boundary}--\r\n"
            ).encode()
            forwarded_for = uploader.session.headers["X-Forwarded-For"]
            if isinstance(forwarded_for, bytes):  # requests allows either
                forwarded_for = forwarded_for.decode("latin-1")
            head = (
                f"POST /api/documents HTTP/1.1\r\nHost: {LOCALHOST}:{self.stack.port}\r\n"
                f"Cookie: {cookie}\r\nAccept: application/json\r\n"
                f"X-Forwarded-For: {forwarded_for}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            connection = socket.create_connection((LOCALHOST, self.stack.port), timeout=15)
            self.connections.append(connection)
            connection.sendall(head + body[: len(body) // 2])
            self.rests.append(body[len(body) // 2 :])
        time.sleep(0.5)  # each taken by a worker, which now waits for the rest
        return self

    def finish(self) -> list[int]:
        """Send the rest of each body; the status of each answer, 0 for none."""
        statuses = []
        for connection, rest in zip(self.connections, self.rests, strict=True):
            try:
                connection.sendall(rest)
                answer = b""
                while chunk := connection.recv(65536):
                    answer += chunk
                statuses.append(int(answer.split(b" ", 2)[1]) if answer else 0)
            except (OSError, ValueError, IndexError):
                statuses.append(0)
        return statuses

    def __exit__(self, *_: object) -> None:
        for connection in self.connections:
            connection.close()


def _note_in_flight(injection: Injection, statuses: list[int]) -> None:
    injection.in_flight = statuses
    injection.notes.append(
        f"the harness's {len(statuses)} uploads in flight at the signal got"
        f" {', '.join(str(status or 'no answer') for status in statuses)}"
    )
    if not all(statuses):
        injection.failed.append("in-flight request lost")


def graceful_reload() -> Fault:
    def inject(stack: Stack) -> Injection:
        old = set(stack.worker_pids())
        with SlowUploads(stack) as uploads:
            injected = time.time()
            stack.signal_master(signal.SIGHUP)
            time.sleep(0.5)
            injection = Injection(injected, injected, replaced=old)
            _note_in_flight(injection, uploads.finish())
        return injection

    return Fault(
        "graceful reload (SIGHUP)",
        "SIGHUP",
        "SIGHUP to the gunicorn master: new workers are started, the old ones stop"
        " gracefully; the listening socket stays open.",
        Expect.PROCESSES_REPLACED,
        inject,
        why=(
            "gunicorn forks the new workers and stops the old ones at once. The app was built"
            " once in the master (`preload_app` in the example's `gunicorn.conf.py`), so a new"
            " worker serves as soon as it is forked, instead of importing and building the app"
            " for a few seconds on two busy cores; the old ones finish their requests first."
            " None is lost; requests that waited more than 1 s for a worker are shed (503)."
        ),
        lossless=True,
        aftermath=_workers_replaced,
    )


def graceful_shutdown() -> Fault:
    def inject(stack: Stack) -> Injection:
        assert stack.gunicorn is not None
        with SlowUploads(stack) as uploads:
            injected = time.time()
            stack.signal_master(signal.SIGTERM)
            time.sleep(0.5)
            in_flight = uploads.finish()
        status = stack.gunicorn.wait(timeout=60)
        stopped = time.time()
        restarted = time.time()
        stack.start_app()
        injection = Injection(
            injected,
            restarted,
            [
                f"gunicorn exited with status {status} {stopped - injected:.2f} s after SIGTERM;"
                f" started again, serving {time.time() - restarted:.2f} s later"
            ],
        )
        _note_in_flight(injection, in_flight)
        return injection

    return Fault(
        "graceful shutdown (SIGTERM), then a new start",
        "SIGTERM",
        "SIGTERM to the gunicorn master: the listener closes, requests in flight finish,"
        " the workers and the master exit; then the app is started again.",
        Expect.SHUTDOWN,
        inject,
        why=(
            "Idle workers close their copy of the listening socket at once (`worker_exit`),"
            " so new connections are refused. A worker busy with a request keeps its copy"
            " until it has answered: connections arriving meanwhile are accepted by the"
            " kernel and reset when it closes, which only a load balancer that stops"
            " sending before the signal avoids (docs/deployment.md)."
        ),
        lossless=True,
    )


def _workers_replaced(stack: Stack, injection: Injection) -> None:
    def replaced() -> bool:
        workers = set(stack.worker_pids())
        return len(workers) == stack.workers and not workers & injection.replaced

    done = wait_until(replaced, timeout=REPLACEMENT_TIMEOUT, interval=0.1)
    took = time.time() - injection.injected
    injection.notes.append(
        f"{stack.workers} workers running again, none of the old, {took:.2f} s after the injection"
        if done
        else f"workers not replaced within {REPLACEMENT_TIMEOUT:g} s"
    )
