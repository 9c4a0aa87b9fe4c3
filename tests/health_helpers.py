"""Helpers of the health tests: a throwaway PostgreSQL server, free ports, waits."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PASSWORD = "s3cret-Pa55word-xyz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def missing(what: str) -> None:
    """Skip locally, fail under CI: a missing server or browser must not pass CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI")
    pytest.skip(what)


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / name).exists():
            return str(directory / name)
    return None


class Postgres:
    """A PostgreSQL cluster of its own, with a password, that a test can stop."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        self.as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://tester:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def create(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        password_file = self.base / "pw"
        password_file.write_text(PASSWORD)
        if self.as_postgres:
            shutil.chown(self.base, "postgres")
            shutil.chown(password_file, "postgres")
        self._run(
            str(self.initdb),
            "-D",
            str(self.data),
            "-U",
            "tester",
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
        )
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        log = str(self.base / "log")
        self._run(str(self.pg_ctl), "-D", str(self.data), "-o", options, "-w", "start", "-l", log)

    def stop(self) -> None:
        self._run(str(self.pg_ctl), "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.fixture(autouse=True)
def stop_monitors() -> Iterator[None]:
    yield
    from health_apps import stop_monitors

    stop_monitors()


@pytest.fixture(scope="session")
def health_postgres() -> Iterator[Postgres]:
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        missing("PostgreSQL (initdb, pg_ctl): apt-get install postgresql")
    # Not under pytest's temporary folder: the postgres user could not enter it.
    base = Path(tempfile.mkdtemp(prefix="health-pg-"))
    base.chmod(0o755)
    server = Postgres(base / "cluster")
    server.create()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()  # a test may have left it stopped
        shutil.rmtree(base, ignore_errors=True)
