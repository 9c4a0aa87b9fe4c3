"""The example app as it runs in production, on throwaway servers of its own.

A :class:`Stack` starts a private PostgreSQL and Redis on free loopback ports,
fills the database with ``flask init-db``, and serves the example app with
gunicorn (its own configuration file, with the hooks, and four workers). The
harnesses load it, break its dependencies and signal its processes; closing the
stack stops every process it started and deletes every folder it made. With
``network=True`` PostgreSQL runs in a network namespace of its own instead, behind
a link that the network faults degrade, which closing the stack removes too.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil
import requests

from harness.network import Link
from tests.support.servers import (
    LOCALHOST,
    PostgresServer,
    RedisServer,
    free_port,
    gunicorn_options,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKERS = 4

#: Deadline of a request's database work: an API that promises p95 under 500 ms
#: should not let a request wait on a lock for the default 30 s.
REQUEST_TIMEOUT = 2

#: A request that waited longer than this for a worker is answered 503 at once.
MAX_QUEUE_TIME = 1

WORKER_CLASSES = ("sync", "gthread")
GTHREAD_THREADS = 4


@dataclass(frozen=True)
class Workers:
    """How gunicorn serves the app: how many workers, of which class, with how many
    threads each (gthread)."""

    count: int = WORKERS
    kind: str = "sync"
    threads: int = 1

    @classmethod
    def of(cls, kind: str, threads: int = GTHREAD_THREADS, count: int = WORKERS) -> Workers:
        """``kind`` workers, with ``threads`` each where the class has threads."""
        if kind not in WORKER_CLASSES:
            raise ValueError(f"worker class {kind!r}: expected one of {WORKER_CLASSES}")
        return cls(count, kind, threads if kind == "gthread" else 1)

    @property
    def label(self) -> str:
        """``4 sync workers`` or ``4 gthread workers of 4 threads``."""
        threads = f" of {self.threads} threads" if self.kind == "gthread" else ""
        return f"{self.count} {self.kind} workers{threads}"

    @property
    def options(self) -> list[str]:
        # Both given every time: a ``threads`` setting of the configuration file would
        # otherwise turn sync workers into gthread ones.
        return [
            "--workers",
            str(self.count),
            "--worker-class",
            self.kind,
            "--threads",
            str(self.threads),
        ]


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """``--worker-class`` (repeatable) and ``--threads``, read back by :func:`workers_chosen`."""
    parser.add_argument(
        "--worker-class",
        action="append",
        choices=WORKER_CLASSES,
        help="gunicorn's worker class; repeat it for a run of each (default: sync, then gthread)",
    )
    parser.add_argument(
        "--threads", type=int, default=GTHREAD_THREADS, help="threads of each gthread worker"
    )


def workers_chosen(arguments: argparse.Namespace) -> list[Workers]:
    """The worker setups of ``--worker-class`` in order: by default sync, then gthread."""
    classes = arguments.worker_class or WORKER_CLASSES
    return [Workers.of(kind, arguments.threads) for kind in classes]


class Stack:
    """PostgreSQL, Redis and the example app under gunicorn, all on 127.0.0.1."""

    def __init__(
        self,
        workers: Workers | int = WORKERS,
        *,
        gunicorn_args: Sequence[str] = (),
        environment: Mapping[str, str] | None = None,
        network: bool = False,
    ) -> None:
        """:param workers: gunicorn's workers (a number: that many sync workers).
        :param gunicorn_args: options added to gunicorn's command line, which win over
        the configuration file (``("--max-requests", "0")`` stops worker recycling).
        :param environment: variables added to the app's environment
        (``FLASK_RESILIENCE_*`` keys set the extension's settings).
        :param network: PostgreSQL in a network namespace of its own, reached through a
        :class:`~harness.network.Link` that the network faults degrade (root only).
        """
        self.worker_setup = Workers(workers) if isinstance(workers, int) else workers
        self.workers = self.worker_setup.count
        self.gunicorn_args = tuple(gunicorn_args)
        self.extra_environment = dict(environment or {})
        self.folder = Path(tempfile.mkdtemp(prefix="flask-resilience-harness-"))
        # The servers' folders live in the system temp folder, which the postgres
        # user can reach when the harness runs as root.
        self.link = Link() if network else None
        self.postgres = (
            PostgresServer(Path(tempfile.gettempdir()))
            if self.link is None
            else PostgresServer(
                Path(tempfile.gettempdir()),
                host=self.link.addresses.server,
                run_inside=self.link.run_inside,
            )
        )
        self.redis = RedisServer(Path(tempfile.gettempdir()))
        self.health_token = secrets.token_urlsafe(24)
        # Kept across restarts: the sessions of the simulated users stay valid.
        self.secret_key = secrets.token_hex(32)
        self.database_url = ""
        self.gunicorn: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.log_file = self.folder / "gunicorn.log"

    # -- starting and stopping ------------------------------------------------

    def start(self) -> None:
        self.start_servers()
        self.start_app()

    def start_servers(self) -> None:
        """PostgreSQL with the demo's data, and Redis: all but the app."""
        if self.link is not None:
            self.link.open()
        self.postgres.start()
        self.redis.start()
        self.database_url = self.postgres.create_database("documents")
        self._flask("init-db")

    def start_app(self) -> None:
        """Start gunicorn and wait until every worker is ready."""
        self.gunicorn = self._serve(self.port, self.log_file)
        if not wait_until(self._serving, timeout=60, interval=0.2):
            raise RuntimeError(f"gunicorn did not start; see {self.log_file}")

    def _serve(self, port: int, log_file: Path) -> subprocess.Popen[bytes]:
        command = [
            str(BIN / "gunicorn"),
            "--config",
            str(ROOT / "example_app" / "gunicorn.conf.py"),
            *self.worker_setup.options,
            "--bind",
            f"{LOCALHOST}:{port}",
            *gunicorn_options(),
            *self.gunicorn_args,
            "example_app:create_app()",
        ]
        with log_file.open("ab") as log:
            return subprocess.Popen(
                command, cwd=ROOT, env=self.environment(), stdout=log, stderr=subprocess.STDOUT
            )

    @contextmanager
    def another_instance(self) -> Iterator[Instance]:
        """A second instance of the app on a port of its own, sharing the stack's
        PostgreSQL and Redis, as a second machine behind the same load balancer would."""
        port = free_port()
        log_file = self.folder / f"gunicorn-{port}.log"
        process = self._serve(port, log_file)
        instance = Instance(f"http://{LOCALHOST}:{port}", process, log_file)
        try:
            if not wait_until(
                lambda: instance.answers("/health/ready") == 200, timeout=60, interval=0.2
            ):
                raise RuntimeError(f"the second instance did not start; see {log_file}")
            yield instance
        finally:
            process.terminate()
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _serving(self) -> bool:
        assert self.gunicorn is not None
        if self.gunicorn.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.gunicorn.returncode}")
        return len(self.worker_pids()) == self.workers and self.ready() == 200

    def stop_app(self, timeout: float = 40) -> int | None:
        """SIGTERM gunicorn and wait for it; its exit status, None if it had to be killed."""
        if self.gunicorn is None or self.gunicorn.poll() is not None:
            return None if self.gunicorn is None else self.gunicorn.returncode
        self.gunicorn.send_signal(signal.SIGTERM)
        try:
            return self.gunicorn.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_app()
            return None

    def _kill_app(self) -> None:
        assert self.gunicorn is not None
        for process in self.processes():
            process.kill()
        self.gunicorn.wait()

    def close(self) -> None:
        try:
            if self.gunicorn is not None and self.gunicorn.poll() is None:
                self._kill_app()
        finally:
            self.redis.cleanup()
            try:
                self.postgres.cleanup()
            finally:
                # Once PostgreSQL, which runs inside it, has stopped.
                if self.link is not None:
                    self.link.close()
                shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what the harnesses look at ---------------------------------------------

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url,
            "SECRET_KEY": self.secret_key,
            "HEALTH_TOKEN": self.health_token,
            "INSTANCE_PATH": str(self.folder / "instance"),
            # The load generator plays a load balancer that forwards each
            # client's address, so each simulated user has its own rate limits.
            "FLASK_RESILIENCE_TRUSTED_PROXIES": "1",
            "FLASK_RESILIENCE_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
            "FLASK_RESILIENCE_MAX_QUEUE_TIME": str(MAX_QUEUE_TIME),
            "PYTHONPATH": str(ROOT),
            **self.extra_environment,
        }

    def worker_pids(self) -> list[int]:
        return [process.pid for process in self.processes()[1:]]

    def processes(self) -> list[psutil.Process]:
        """The gunicorn master first, then its workers."""
        if self.gunicorn is None or self.gunicorn.poll() is not None:
            return []
        try:
            master = psutil.Process(self.gunicorn.pid)
            return [master, *master.children()]
        except psutil.NoSuchProcess:
            return []

    def signal_master(self, signum: int) -> None:
        assert self.gunicorn is not None
        self.gunicorn.send_signal(signum)

    def ready(self) -> int:
        return self.status("/health/ready")

    def status(self, path: str, timeout: float = 5) -> int:
        """The status of one GET, 0 when the server did not answer."""
        return status_of(self.url + path, timeout)

    def _flask(self, *args: str) -> None:
        subprocess.run(
            [str(BIN / "flask"), "--app", "example_app", *args],
            cwd=ROOT,
            env=self.environment(),
            check=True,
            capture_output=True,
            timeout=300,
        )


@dataclass(frozen=True)
class Instance:
    """One more gunicorn serving the app (:meth:`Stack.another_instance`)."""

    url: str
    process: subprocess.Popen[bytes]
    log_file: Path

    def answers(self, path: str, timeout: float = 5) -> int:
        """The status of one GET, 0 when the server did not answer."""
        return status_of(self.url + path, timeout)

    def worker_pids(self) -> list[int]:
        try:
            return [child.pid for child in psutil.Process(self.process.pid).children()]
        except psutil.NoSuchProcess:
            return []


def status_of(url: str, timeout: float) -> int:
    """The status of one GET of ``url``, 0 when the server did not answer."""
    try:
        return requests.get(url, timeout=timeout).status_code
    except requests.RequestException:
        return 0


def wait_seconds(condition: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``condition()`` holds, None if it did not within ``timeout``."""
    start = time.monotonic()
    if wait_until(condition, timeout=timeout, interval=0.05):
        return time.monotonic() - start
    return None
