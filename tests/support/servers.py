"""Real, throwaway PostgreSQL and Redis servers for the test-suite.

Fault tests need servers they may stop, crash (SIGKILL) and restart without
disturbing anybody else, so this module starts private server processes in a
temporary folder, on a free port bound to 127.0.0.1, and removes everything
again afterwards.  Nothing here is mocked: the servers are the real binaries.

Typical use::

    server = PostgresServer(Path(tempfile.gettempdir()))
    server.start()
    try:
        engine = sqlalchemy.create_engine(server.url)
        ...
        server.kill()  # crash it
        server.restart()  # crash recovery, same port and data
    finally:
        server.cleanup()

Both server classes are also context managers (``start`` on enter, ``cleanup``
on exit), and every started server is remembered so that an ``atexit`` hook can
clean up whatever a crashed test run left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import psutil
import psycopg
import pytest
import redis as redis_lib
from packaging.version import Version
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, make_url

LOCALHOST = "127.0.0.1"

#: Where Debian/Ubuntu install the server binaries of each PostgreSQL version.
POSTGRES_LIB_DIR = Path("/usr/lib/postgresql")

#: System user that runs PostgreSQL when the tests run as root (initdb and
#: postgres both refuse to run as root).
POSTGRES_SYSTEM_USER = "postgres"

#: Superuser created by initdb in every throwaway cluster.
POSTGRES_SUPERUSER = "postgres"

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def find_postgres_bin(
    name: str, *, path: str | None = None, lib_dir: Path = POSTGRES_LIB_DIR
) -> str | None:
    """Return the full path of the PostgreSQL program *name*, or None.

    *name* is looked up on ``PATH`` first (or on *path* when given), then in
    ``<lib_dir>/<version>/bin`` with the newest version first, which is where
    Debian and Ubuntu keep ``initdb``, ``pg_ctl`` and ``postgres``.
    """
    found = shutil.which(name, path=path)
    if found is not None:
        return found

    def version_key(directory: Path) -> tuple[int, ...]:
        # "15" -> (15,), "9.6" -> (9, 6); non-numeric names sort last.
        parts = directory.name.split(".")
        return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()

    if not lib_dir.is_dir():
        return None
    for version_dir in sorted(lib_dir.iterdir(), key=version_key, reverse=True):
        candidate = version_dir / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(port: int, host: str = LOCALHOST) -> bool:
    """True when something accepts TCP connections on *host*:*port*."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll *condition* until it is true or *timeout* seconds have passed.

    Returns the last result, so callers can raise their own, precise error.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def gunicorn_options() -> list[str]:
    """Options for every gunicorn that the tests and the harnesses start.

    From 25.1 gunicorn opens a control socket at one path per user
    (``$XDG_RUNTIME_DIR/gunicorn.ctl`` or ``~/.gunicorn/gunicorn.ctl``), which two
    servers at once would share; older releases open none and lack the option.
    """
    try:
        installed = Version(importlib.metadata.version("gunicorn"))
    except importlib.metadata.PackageNotFoundError:
        return []
    return ["--no-control-socket"] if installed >= Version("25.1") else []


def log_tail(path: Path, lines: int = 30) -> str:
    """The last *lines* lines of a server log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test when a server cannot be provided, but fail under CI.

    A missing server must never silently turn into skipped tests on CI, so
    when the ``CI`` environment variable is set (non-empty) this fails.
    """
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def postgres_unavailable_reason() -> str | None:
    """Why no throwaway PostgreSQL server can be started here, or None."""
    missing = [name for name in ("initdb", "pg_ctl") if find_postgres_bin(name) is None]
    if missing:
        return (
            f"PostgreSQL server binaries not found ({', '.join(missing)}): "
            "install PostgreSQL server binaries (apt-get install postgresql)"
        )
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root needs runuser to start PostgreSQL (apt-get install util-linux)"
        try:
            pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            return (
                f"running as root needs a {POSTGRES_SYSTEM_USER!r} system user to run "
                "PostgreSQL (apt-get install postgresql creates it)"
            )
    return None


def redis_unavailable_reason() -> str | None:
    """Why no throwaway Redis server can be started here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server not found: install Redis (apt-get install redis-server)"
    return None


def _process_alive(proc: psutil.Process) -> bool:
    """True unless *proc* has exited (a zombie counts as exited)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ---------------------------------------------------------------------------
# PostgreSQL URLs and per-test databases
# ---------------------------------------------------------------------------


def normalize_postgres_url(url: str) -> str:
    """Return *url* as a SQLAlchemy URL that uses the psycopg (v3) driver.

    Accepts ``postgres://`` and ``postgresql://`` URLs (as found in
    environment variables) as well as ``postgresql+psycopg://``.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_conninfo(url: str) -> str:
    """Turn a SQLAlchemy PostgreSQL URL into a conninfo string for psycopg.connect().

    Built from the URL's parts rather than by re-rendering the URL, so that
    passwords with any characters (spaces, quotes, ...) reach libpq intact.
    Query parameters (``?sslmode=...``) are passed on as connection options.
    """
    parsed = make_url(url)
    params: dict[str, str | int] = {
        key: value if isinstance(value, str) else value[-1] for key, value in parsed.query.items()
    }
    for key, value in (
        ("host", parsed.host),
        ("port", parsed.port),
        ("user", parsed.username),
        ("password", parsed.password),
        ("dbname", parsed.database),
    ):
        if value is not None:
            params[key] = value
    return make_conninfo("", **params)


def with_database(url: str, database: str) -> str:
    """*url* pointing at another database on the same server."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def unique_database_name(prefix: str = "test") -> str:
    """A database name that is unique for all practical purposes."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def create_database(url: str, name: str) -> str:
    """Create database *name* on the server of *url*; return its URL.

    Connects to the database named in *url* (which must exist) to run
    ``CREATE DATABASE``, since that statement cannot run in a transaction.
    """
    with psycopg.connect(libpq_conninfo(url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(url, name)


def drop_database(url: str, name: str) -> None:
    """Drop database *name* on the server of *url*, even if sessions use it.

    ``WITH (FORCE)`` (PostgreSQL 13+) terminates the remaining connections,
    so a test that leaks a connection cannot block the cleanup.
    """
    with psycopg.connect(libpq_conninfo(url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# ---------------------------------------------------------------------------
# Redis helpers
# ---------------------------------------------------------------------------


def flush_redis(url: str, *, all_databases: bool = True) -> None:
    """Empty the Redis server of *url*: FLUSHALL, or FLUSHDB of the URL's database."""
    client = redis_lib.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        if all_databases:
            client.flushall()
        else:
            client.flushdb()
    finally:
        client.close()


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------

# Every started server, so the atexit hook can clean up after an aborted run.
_LIVE_SERVERS: set[_Server] = set()


_ServerT = TypeVar("_ServerT", bound="_Server")


class _Server:
    """What both servers share: a private folder, a port and cleanup."""

    name = "server"
    host = LOCALHOST

    def __init__(self, base_dir: Path) -> None:
        # Private folder for data, sockets and logs, removed by cleanup().
        self.root = Path(tempfile.mkdtemp(prefix=f"resilience-{self.name}-", dir=base_dir))
        self._port: int | None = None
        self._cleaned_up = False
        _LIVE_SERVERS.add(self)

    @property
    def port(self) -> int:
        """The TCP port; chosen on the first start and kept across restarts."""
        if self._port is None:
            raise RuntimeError(f"{self.name} server has not been started yet")
        return self._port

    def _claim_port(self) -> None:
        if self._cleaned_up:
            raise RuntimeError(f"{self.name} server was cleaned up and cannot start again")
        if self._port is None:
            self._port = free_port()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def is_running(self) -> bool:
        raise NotImplementedError

    def restart(self) -> None:
        """Stop the server if it runs, then start it on the same port and data."""
        if self.is_running():
            self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and delete its folder. Safe to call more than once."""
        try:
            self.stop()
        finally:
            self._cleaned_up = True
            _LIVE_SERVERS.discard(self)
            shutil.rmtree(self.root, ignore_errors=True)

    def _wait_port_closed(self) -> None:
        if not wait_until(lambda: not port_is_open(self.port, self.host), timeout=10):
            raise RuntimeError(f"{self.name} server port {self.port} is still open")

    def __enter__(self: _ServerT) -> _ServerT:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class PostgresServer(_Server):
    """A private PostgreSQL cluster in a temporary folder under *base_dir*.

    With ``password=None`` every connection is trusted.  With a password, TCP
    connections (the ones made through :attr:`url`) need scram-sha-256
    authentication as user ``postgres`` with that password; the Unix socket in
    the private folder stays trusted.

    When the tests run as root, ``initdb`` and ``postgres`` are run as the
    ``postgres`` system user through ``runuser``, so *base_dir* must be
    reachable by that user (the system temp folder is; pytest's ``tmp_path``,
    which is private to root, is not).

    A server on another network (a namespace of the harness behind a link it can
    degrade) is given its address as *host*, and as *run_inside* the command that
    runs a program there (``["ip", "netns", "exec", NAME]``).
    """

    name = "postgres"

    def __init__(
        self,
        base_dir: Path,
        password: str | None = None,
        *,
        host: str = LOCALHOST,
        run_inside: Sequence[str] = (),
    ) -> None:
        pg_ctl = find_postgres_bin("pg_ctl")
        if pg_ctl is None:
            raise RuntimeError("pg_ctl not found: install PostgreSQL (apt-get install postgresql)")
        # Prefer the initdb of the same installation as pg_ctl.
        sibling = Path(os.path.realpath(pg_ctl)).with_name("initdb")
        initdb = str(sibling) if sibling.is_file() else find_postgres_bin("initdb")
        if initdb is None:
            raise RuntimeError("initdb not found: install PostgreSQL (apt-get install postgresql)")
        self._pg_ctl = pg_ctl
        self._initdb = initdb
        self._as_root = os.geteuid() == 0
        self.password = password
        self.host = host
        self._run_inside = list(run_inside)
        self._pid: int | None = None
        self._pid_created: float | None = None
        self._initialized = False
        # Id of the shared memory segment left over by a killed postmaster.
        self._stale_shmid: int | None = None
        super().__init__(base_dir)

    # -- paths and URLs -----------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of *database* on this server (with the password)."""
        return URL.create(
            "postgresql+psycopg",
            username=POSTGRES_SUPERUSER,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database,
        ).render_as_string(hide_password=False)

    @property
    def url(self) -> str:
        """``postgresql+psycopg://postgres[:password]@127.0.0.1:PORT/test``."""
        return self.url_for("test")

    @property
    def dsn(self) -> str:
        """Conninfo string of the ``test`` database, for psycopg.connect()."""
        return libpq_conninfo(self.url)

    # -- running commands ---------------------------------------------------

    def _run(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program, as the postgres user when we are root."""
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", POSTGRES_SYSTEM_USER, "--", *cmd]
        cmd = [*self._run_inside, *cmd]
        # PG* variables (PGDATA, PGPORT, ...) must not leak into our cluster.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(
            cmd,
            cwd=self.root,  # the postgres user may not reach our cwd
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _give_to_postgres_user(self, path: Path) -> None:
        if self._as_root:
            user = pwd.getpwnam(POSTGRES_SYSTEM_USER)
            os.chown(path, user.pw_uid, user.pw_gid)

    # -- lifecycle ----------------------------------------------------------

    def _initdb_and_configure(self) -> None:
        root = self.root
        self._give_to_postgres_user(root)
        self.socket_dir.mkdir(exist_ok=True)
        self._give_to_postgres_user(self.socket_dir)

        args = [
            self._initdb,
            "--pgdata",
            str(self.data_dir),
            "--username",
            POSTGRES_SUPERUSER,
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
            "--auth-local",
            "trust",
        ]
        pwfile = root / "pwfile"
        if self.password is None:
            args += ["--auth-host", "trust"]
        else:
            pwfile.touch(mode=0o600)
            pwfile.write_text(self.password + "\n")
            self._give_to_postgres_user(pwfile)
            args += ["--auth-host", "scram-sha-256", "--pwfile", str(pwfile)]
        try:
            result = self._run(*args)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            hint = f" (user {POSTGRES_SYSTEM_USER!r} must be able to reach {root})"
            raise RuntimeError(
                f"initdb failed{hint if self._as_root else ''}:\n{result.stdout}{result.stderr}"
            )

        def quote(value: str) -> str:
            return "'" + value.replace("'", "''") + "'"

        settings = {
            "listen_addresses": quote(self.host),
            "port": str(self.port),
            "unix_socket_directories": quote(str(self.socket_dir)),
            # No fsync: throwaway data need not survive an OS crash, only a
            # server crash (kill()), for which writing WAL to the page cache
            # is enough.
            "fsync": "off",
            "full_page_writes": "off",
            # But commits stay synchronous: with "off" a commit returns before
            # its WAL is written, so kill() could lose the last ~0.6 s of
            # committed transactions and fault tests asserting "committed data
            # survives a crash" would flake.  With fsync off, "on" only costs
            # a write() per commit, which is not measurable.
            "synchronous_commit": "on",
            "max_connections": "100",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Throwaway test server\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        if self.host != LOCALHOST:
            # initdb let in loopback clients only; this server's network is its own.
            method = "trust" if self.password is None else "scram-sha-256"
            with (self.data_dir / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all 0.0.0.0/0 {method}\n")
        self._initialized = True

    def _read_pid_file(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return []

    def _clear_stale_lock_files(self) -> None:
        """Remove the lock files of a postmaster that is known to be dead.

        PostgreSQL removes stale lock files itself, unless the dead postmaster
        is still a zombie (an init that does not reap orphans, as in some
        containers): ``kill(pid, 0)`` then succeeds and the new postmaster
        refuses to start.  We only get here after checking the pid is dead.
        """
        lines = self._read_pid_file()
        if not lines:
            return
        with contextlib.suppress(ValueError, psutil.NoSuchProcess):
            if _process_alive(psutil.Process(int(lines[0]))):
                return  # a live postmaster: not stale
        # Line 7 holds "<shm key> <shm id>" of the segment the dead postmaster
        # used; remember it, cleanup() frees it unless a restart reuses it.
        if len(lines) >= 7 and len(lines[6].split()) == 2:
            self._stale_shmid = int(lines[6].split()[1])
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        (self.socket_dir / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def _free_stale_shared_memory(self) -> None:
        """Best effort: remove the SysV segment of a killed, never restarted server."""
        shmid, self._stale_shmid = self._stale_shmid, None
        if shmid is None or shutil.which("ipcrm") is None:
            return
        # Only if nobody is attached to it any more (columns: key shmid perms
        # size cpid lpid nattch ...).
        try:
            rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
        except OSError:
            return
        for row in rows:
            cols = row.split()
            if len(cols) > 6 and cols[1] == str(shmid) and cols[6] == "0":
                subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True, check=False)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server (initdb on first use) and wait until it accepts connections."""
        if self.is_running():
            return
        self._claim_port()
        first_start = not self._initialized
        if first_start:
            self._initdb_and_configure()
        self._clear_stale_lock_files()

        deadline = time.monotonic() + timeout
        result = self._run(
            self._pg_ctl,
            "start",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_file),
            "--wait",
            "--timeout",
            str(max(1, int(timeout))),
            timeout=timeout + 5,
        )
        lines = self._read_pid_file()
        if result.returncode != 0 or not lines:
            raise RuntimeError(
                f"PostgreSQL did not start on port {self.port}:\n"
                f"{result.stdout}{result.stderr}\n--- server log ---\n{log_tail(self.log_file)}"
            )
        proc = psutil.Process(int(lines[0]))
        self._pid, self._pid_created = proc.pid, proc.create_time()
        self._stale_shmid = None  # a restart cleans up the old segment itself

        self._wait_accepting(deadline)
        if first_start:
            with psycopg.connect(
                libpq_conninfo(self.url_for("postgres")), autocommit=True, connect_timeout=10
            ) as conn:
                conn.execute("CREATE DATABASE test")

    def _wait_accepting(self, deadline: float) -> None:
        """Wait until a real client session works (pg_ctl --wait is not enough for TCP)."""
        last_error: Exception | None = None
        dsn = libpq_conninfo(self.url_for("postgres"))
        while True:
            try:
                with psycopg.connect(dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last_error = exc
            if time.monotonic() >= deadline or not self.is_running():
                raise RuntimeError(
                    f"PostgreSQL on port {self.port} does not accept connections: "
                    f"{last_error}\n--- server log ---\n{log_tail(self.log_file)}"
                )
            time.sleep(0.05)

    def _postmaster(self) -> psutil.Process | None:
        """The running postmaster, or None (also guards against pid reuse)."""
        if self._pid is None:
            return None
        try:
            proc = psutil.Process(self._pid)
            if proc.create_time() != self._pid_created or not _process_alive(proc):
                return None
            return proc
        except psutil.NoSuchProcess:
            return None

    def is_running(self) -> bool:
        return self._postmaster() is not None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Fast shutdown (``pg_ctl stop -m fast``); does nothing if not running."""
        if self.is_running():
            result = self._run(
                self._pg_ctl,
                "stop",
                "--pgdata",
                str(self.data_dir),
                "--mode",
                "fast",
                "--wait",
                "--timeout",
                str(max(1, int(timeout))),
                timeout=timeout + 5,
            )
            if result.returncode != 0 or self.is_running():
                self.kill()  # refused to stop in time: crash it instead
                return
            self._wait_port_closed()
        self._pid = None

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster and all its children.

        Waits until every process is gone and the port is closed.  The next
        :meth:`restart` performs crash recovery, so committed data survives.
        """
        postmaster = self._postmaster()
        if postmaster is None:
            self._pid = None
            return
        procs = [postmaster]
        try:
            # Freeze the postmaster first so it cannot fork new children (or
            # notice dead ones and start recovery) while we collect them.
            postmaster.suspend()
            procs += postmaster.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        if not wait_until(lambda: not any(_process_alive(p) for p in procs), timeout=10):
            raise RuntimeError(f"PostgreSQL processes survived SIGKILL: {procs}")
        self._pid = None
        self._clear_stale_lock_files()
        self._wait_port_closed()

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            self._free_stale_shared_memory()
            self._initialized = False

    # -- per-test databases --------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database *name*; return its SQLAlchemy URL."""
        return create_database(self.url, name)

    def drop_database(self, name: str) -> None:
        """Drop database *name*, disconnecting any remaining sessions."""
        drop_database(self.url, name)


class RedisServer(_Server):
    """A private ``redis-server`` child process without any persistence."""

    name = "redis"

    def __init__(self, base_dir: Path) -> None:
        super().__init__(base_dir)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{LOCALHOST}:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.root / "redis.log"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start redis-server (on the same port as before, if any) and wait for PING."""
        if self.is_running():
            return
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(
                "redis-server not found: install Redis (apt-get install redis-server)"
            )
        self._claim_port()
        cmd = [
            executable,
            "--port",
            str(self.port),
            "--bind",
            LOCALHOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
            "--daemonize",
            "no",
        ]
        with self.log_file.open("ab") as log:
            # A new session keeps terminal signals (Ctrl-C) away from it: we
            # stop it ourselves.  Our copy of the log handle is closed when the
            # with block ends; the child keeps its own.
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Poll until it answers PING, or stop early if it died (port taken...).
        ready = wait_until(lambda: not self.is_running() or self._answers_ping(), timeout)
        if not ready or not self.is_running():
            # No port check here: the port may well belong to someone else.
            if self._proc is not None and self.is_running():
                self._proc.kill()
            self._reap()
            raise RuntimeError(
                f"redis-server did not start on port {self.port}:\n{log_tail(self.log_file)}"
            )

    def _answers_ping(self) -> bool:
        client = redis_lib.Redis(
            host=LOCALHOST, port=self.port, socket_timeout=1, socket_connect_timeout=1
        )
        try:
            return bool(client.ping())
        except redis_lib.RedisError:
            return False
        finally:
            client.close()

    def _reap(self, timeout: float = STOP_TIMEOUT) -> None:
        if self._proc is not None:
            self._proc.wait(timeout=timeout)
            self._proc = None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (clean shutdown, nothing saved); SIGKILL if it hangs."""
        if self._proc is None:
            return
        if self.is_running():
            self._proc.terminate()
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reap()
        self._wait_port_closed()

    def kill(self) -> None:
        """Crash the server with SIGKILL and wait until its port is closed."""
        if self._proc is None:
            return
        if self.is_running():
            self._proc.kill()
        self._reap()
        self._wait_port_closed()


def mariadb_unavailable_reason() -> str | None:
    """Why no throwaway MariaDB can be started here, or ``None``."""
    missing = [name for name in ("mariadb-install-db", "mariadbd") if _mariadb_tool(name) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not found: install MariaDB (apt-get install mariadb-server)"
        )
    return None


def _mariadb_tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


class MariaDBServer(_Server):
    """A private ``mariadbd`` on a free loopback port, its data in a temporary folder.

    ``mariadb-install-db`` makes the system tables once; ``root`` has no password.
    """

    name = "mariadb"
    database = "test"

    def __init__(self, base_dir: Path) -> None:
        super().__init__(base_dir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._installed = False

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``test`` database, through PyMySQL."""
        return f"mysql+pymysql://root@{LOCALHOST}:{self.port}/{self.database}"

    @property
    def log_file(self) -> Path:
        return self.root / "mariadb.log"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _install(self) -> None:
        installer = _mariadb_tool("mariadb-install-db")
        assert installer is not None
        done = subprocess.run(
            [
                installer,
                "--no-defaults",
                f"--datadir={self.root / 'data'}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT * 4,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{done.stdout}\n{done.stderr}")
        self._installed = True

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start mariadbd (on the same port and data as before, if any) and wait for it."""
        if self.is_running():
            return
        if not self._installed:
            self._install()
        server = _mariadb_tool("mariadbd")
        assert server is not None
        self._claim_port()
        cmd = [
            server,
            "--no-defaults",
            f"--datadir={self.root / 'data'}",
            f"--port={self.port}",
            f"--bind-address={LOCALHOST}",
            f"--socket={self.root / 'mariadb.sock'}",
            f"--pid-file={self.root / 'mariadb.pid'}",
            "--user=root",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
        ]
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_until(lambda: not self.is_running() or self._answers(), timeout * 2):
            self.kill()
            raise RuntimeError(f"mariadbd did not start:\n{log_tail(self.log_file)}")
        if not self.is_running():
            raise RuntimeError(f"mariadbd exited at start:\n{log_tail(self.log_file)}")
        self._execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")

    def _connect(self) -> Any:
        import pymysql

        return pymysql.connect(
            host=LOCALHOST, port=self.port, user="root", password="", connect_timeout=2
        )

    def _answers(self) -> bool:
        try:
            self._connect().close()
        except Exception:
            return False
        return True

    def _execute(self, statement: str) -> None:
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (a clean shutdown); SIGKILL if it hangs."""
        if self._proc is None:
            return
        if self.is_running():
            self._proc.terminate()
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc.wait(timeout=timeout)
        self._proc = None
        self._wait_port_closed()

    def kill(self) -> None:
        if self._proc is None:
            return
        if self.is_running():
            self._proc.kill()
        self._proc.wait(timeout=STOP_TIMEOUT)
        self._proc = None
        self._wait_port_closed()


@atexit.register
def _cleanup_leftover_servers() -> None:
    """Safety net: never leave server processes behind, whatever happened."""
    for server in list(_LIVE_SERVERS):
        with contextlib.suppress(Exception):
            server.cleanup()


__all__ = [
    "MariaDBServer",
    "PostgresServer",
    "RedisServer",
    "create_database",
    "drop_database",
    "find_postgres_bin",
    "flush_redis",
    "free_port",
    "libpq_conninfo",
    "mariadb_unavailable_reason",
    "normalize_postgres_url",
    "port_is_open",
    "postgres_unavailable_reason",
    "redis_unavailable_reason",
    "skip_or_fail",
    "unique_database_name",
    "wait_until",
    "with_database",
]
