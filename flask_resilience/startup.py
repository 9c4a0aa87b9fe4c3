"""Startup checks, shared by ``flask resilience check`` and ``RESILIENCE_VALIDATE_ON_STARTUP``.

Each check gives ``pass``, ``warn`` or ``fail``. A warning is worth reading and
never stops a start; a failure always does. Databases and Redis are tried
``RESILIENCE_STARTUP_RETRIES`` times with exponential backoff, so a container
that starts before its database waits for it instead of crashing.
"""

from __future__ import annotations

import contextvars
import importlib
import importlib.metadata
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from flask import Flask
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from sqlalchemy.pool import NullPool

from . import limiting, server
from .errors import StartupCheckFailed
from .guards import cookies
from .log import ExtensionLogger, hide_password
from .state import get_state

logger = ExtensionLogger("startup")

Status = Literal["pass", "warn", "fail"]
DISTRIBUTION = "flask-resilience"
CONNECT_TIMEOUT = 5
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 8.0
_REDIS_KEYS = (
    "RATELIMIT_STORAGE_URI",
    "RESILIENCE_CIRCUIT_STORAGE_URI",
    "REDIS_URL",
    "CACHE_REDIS_URL",
)
_REDIS_URL_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+unix"})
skip_validation: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "flask_resilience_skip_validation", default=False
)
"""Set by ``flask resilience check``: it loads the app to report on it, not to refuse it."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str


def run_checks(
    app: Flask,
    *,
    retries: int | None = None,
    workers: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    unreachable: Status = "fail",
) -> list[CheckResult]:
    """Every startup check for ``app``.

    :param retries: attempts for each database and Redis; ``RESILIENCE_STARTUP_RETRIES``
        by default.
    :param workers: worker processes that will serve the app; guessed by default.
    :param unreachable: the status of a database or Redis that cannot be reached.
    """
    config = app.config
    settings = get_state(app).settings
    attempts = retries or settings.startup_retries
    results = [check_python(), *check_packages(), check_libmagic()]
    results += [
        check_folder(key, path) for key, path in configured_folders(config, settings.folders)
    ]
    results += [
        check_reachable(
            f"database {name}",
            url,
            partial_connect(url, options, app.instance_path),
            attempts,
            sleep,
            unreachable,
        )
        for name, url, options in database_urls(config)
    ]
    results += [
        check_reachable(f"redis {key}", url, partial_ping(url), attempts, sleep, unreachable)
        for key, url in redis_urls(config)
    ]
    results += check_session_settings(config)
    results.append(check_rate_limits(app))
    results.append(check_rate_limit_storage(app, workers or server.worker_count()))
    return results


def passed(results: list[CheckResult]) -> bool:
    """True when nothing failed; warnings do not count."""
    return all(result.status != "fail" for result in results)


def validate(app: Flask) -> None:
    """Run the checks and refuse to start on a failure (``RESILIENCE_VALIDATE_ON_STARTUP``).

    :raises StartupCheckFailed: a check failed; its message lists the failures.
    """
    if skip_validation.get():
        return
    if server.replaces_a_worker():
        # The server is up and its other workers serve. Were this worker to refuse to
        # start, gunicorn would stop the whole server: a database that is down for a few
        # seconds while a worker is recycled would take the app down for good. It starts
        # at once and answers 503 until the database is back, as the others do.
        results = run_checks(app, retries=1, unreachable="warn")
    else:
        results = run_checks(app)
    log = logger.bound_to(app)  # init_app runs outside any app context
    for result in results:
        if result.status == "warn":
            log.warning("Startup check %s: %s", result.name, result.detail)
    failures = [result for result in results if result.status == "fail"]
    if failures:
        lines = "\n".join(f"  {result.name}: {result.detail}" for result in failures)
        raise StartupCheckFailed(f"The app cannot start; failed checks:\n{lines}", results)


# --- Output -----------------------------------------------------------------------------


def render_table(results: list[CheckResult]) -> str:
    width = max([len("check"), *(len(result.name) for result in results)])
    lines = [f"{'CHECK':<{width}}  STATUS  DETAIL"]
    lines += [f"{r.name:<{width}}  {r.status:<6}  {r.detail}" for r in results]
    counts = {status: sum(r.status == status for r in results) for status in ("pass", "warn")}
    failed = len(results) - counts["pass"] - counts["warn"]
    lines.append(f"\n{counts['pass']} passed, {counts['warn']} warnings, {failed} failed")
    return "\n".join(lines)


def render_json(results: list[CheckResult]) -> str:
    return json.dumps(
        {"ok": passed(results), "checks": [asdict(result) for result in results]}, indent=2
    )


# --- The checks ---------------------------------------------------------------------------


def check_python() -> CheckResult:
    running = ".".join(str(part) for part in sys.version_info[:3])
    required = _metadata_field("Requires-Python") or ">=3.10"
    if running in SpecifierSet(required):
        return CheckResult("python", "pass", f"{running} (requires {required})")
    return CheckResult("python", "fail", f"{running}, but flask_resilience requires {required}")


def check_packages() -> list[CheckResult]:
    """Each runtime dependency installed, in a version that satisfies its requirement."""
    results = []
    for text in importlib.metadata.requires(DISTRIBUTION) or []:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra the app may not use
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            results.append(
                CheckResult(
                    f"package {requirement.name}",
                    "fail",
                    f"not installed; pip install '{requirement}'",
                )
            )
            continue
        if requirement.specifier and version not in requirement.specifier:
            detail = f"{version} installed, {requirement} required"
            results.append(CheckResult(f"package {requirement.name}", "fail", detail))
        else:
            results.append(CheckResult(f"package {requirement.name}", "pass", version))
    return results


def check_libmagic() -> CheckResult:
    """libmagic, which upload validation reads file types with, loads and works."""
    try:
        magic = importlib.import_module("magic")
        found = magic.from_buffer(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", mime=True)
    except Exception as error:  # ImportError when libmagic is missing, or its own errors
        return CheckResult(
            "libmagic",
            "fail",
            f"{error}; install it (Debian/Ubuntu: apt-get install libmagic1,"
            " Alpine: apk add libmagic, macOS: brew install libmagic)",
        )
    return CheckResult("libmagic", "pass", f"identifies a PDF as {found}")


def configured_folders(
    config: Mapping[str, Any], extra: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """Folders the app says it writes to: ``*_FOLDER`` keys, ``SESSION_FILE_DIR``, ours."""
    folders = [
        (key, os.fspath(value))
        for key, value in config.items()
        if (key.endswith("_FOLDER") or key == "SESSION_FILE_DIR")
        and isinstance(value, (str, os.PathLike))
    ]
    folders += [(f"RESILIENCE_FOLDERS[{index}]", path) for index, path in enumerate(extra)]
    return folders


def check_folder(key: str, path: str) -> CheckResult:
    """The folder exists and takes a file; missing but creatable is only a warning.

    Apps often create such folders on first use; in a container, though, a folder
    that is missing may be a volume that was not mounted.
    """
    name = f"folder {key}"
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        return CheckResult(name, "fail", f"{path} is not a folder")
    if not folder.exists():
        ancestor = _nearest_existing(folder)
        if ancestor.is_dir() and _writable(ancestor) is None:
            detail = f"{path} does not exist yet; it can be created ({ancestor} is writable)"
            return CheckResult(name, "warn", detail)
        return CheckResult(name, "fail", f"{path} does not exist and cannot be created")
    problem = _writable(folder)
    if problem is not None:
        return CheckResult(name, "fail", f"{path} is not writable: {problem}")
    return CheckResult(name, "pass", f"{path} exists and is writable")


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.absolute().parents):
        if candidate.exists():
            return candidate
    return Path("/")  # pragma: no cover - the root always exists


def _writable(folder: Path) -> str | None:
    """Why a file cannot be made in ``folder``, or ``None`` when it can."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def database_urls(config: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(bind name, URL, engine options) of the default database and each bind."""
    found: list[tuple[str, str, Mapping[str, Any]]] = []
    options: Mapping[str, Any] = config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
    uri = config.get("SQLALCHEMY_DATABASE_URI") or options.get("url")
    if uri:
        found.append(("default", str(uri), options))
    for key, value in (config.get("SQLALCHEMY_BINDS") or {}).items():
        bind = value if isinstance(value, Mapping) else {"url": value}
        if bind.get("url"):
            found.append((str(key), str(bind["url"]), bind))
    return found


def partial_connect(
    url: str, options: Mapping[str, Any], instance_path: str | None = None
) -> Callable[[], None]:
    def connect() -> None:
        parsed = in_instance_folder(sa.engine.make_url(url), instance_path)
        connect_args = dict(options.get("connect_args") or {})
        if parsed.get_backend_name() in ("postgresql", "mysql", "mariadb"):
            connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT)
        engine = sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()

    return connect


def in_instance_folder(url: sa.engine.URL, instance_path: str | None) -> sa.engine.URL:
    """A relative SQLite path where Flask-SQLAlchemy puts it: in the instance folder.

    Resolved against the working directory instead, the check would try (and
    create) another file than the one the app opens.
    """
    database = url.database
    if (
        instance_path is None
        or url.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
        or os.path.isabs(database)
    ):
        return url
    os.makedirs(instance_path, exist_ok=True)  # as Flask-SQLAlchemy does for such a URL
    return url.set(database=os.path.join(instance_path, database))


def redis_urls(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        (key, str(config[key]))
        for key in _REDIS_KEYS
        if isinstance(config.get(key), str) and config[key].split(":", 1)[0] in _REDIS_URL_SCHEMES
    ]


def partial_ping(url: str) -> Callable[[], None]:
    def ping() -> None:
        redis = importlib.import_module("redis")
        client = redis.from_url(
            url.replace("redis+unix://", "unix://"),
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=CONNECT_TIMEOUT,
        )
        try:
            client.ping()
        finally:
            client.close()

    return ping


def check_reachable(
    name: str,
    url: str,
    attempt: Callable[[], None],
    attempts: int,
    sleep: Callable[[float], None],
    unreachable: Status = "fail",
) -> CheckResult:
    """Try ``attempt`` up to ``attempts`` times, waiting 0.5 s, 1 s, 2 s ... in between."""
    shown = hide_password(url)
    error: Exception | None = None
    for number, delay in zip(range(1, attempts + 1), _backoff(), strict=False):
        try:
            attempt()
        except Exception as caught:
            error = caught
            if number < attempts:
                logger.info("%s unreachable (attempt %d of %d): %s", name, number, attempts, caught)
                sleep(delay)
            continue
        tries = "" if number == 1 else f" after {number} attempts"
        return CheckResult(name, "pass", f"{shown} reachable{tries}")
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    detail = f"{shown} unreachable after {attempts} attempts: {reason}"
    return CheckResult(name, unreachable, detail)


def _backoff() -> Iterator[float]:
    delay = _FIRST_BACKOFF
    while True:
        yield delay
        delay = min(delay * 2, _MAX_BACKOFF)


def check_session_settings(config: Mapping[str, Any]) -> list[CheckResult]:
    """``SECRET_KEY`` and the cookie flags, by the guards' one audit and its severities."""
    if not cookies.audited(config):
        return [
            CheckResult("SECRET_KEY", "pass", "not checked in debug or testing"),
            CheckResult("cookies", "pass", "not checked in debug or testing"),
        ]
    findings = cookies.audit(config)
    results = [CheckResult(f.name, f.severity, f.text) for f in findings]
    if not any(f.name == "SECRET_KEY" for f in findings):
        results.insert(0, CheckResult("SECRET_KEY", "pass", "set and hard to guess"))
    if not any(f.name == "cookies" for f in findings):
        results.append(CheckResult("cookies", "pass", "secure, HTTP-only, SameSite"))
    return results


def check_rate_limits(app: Flask) -> CheckResult:
    """Advice when rate limiting is on but nothing is limited app-wide."""
    limiter = limiting.limiter_of(app)
    if limiter is None or not limiter.enabled:
        return CheckResult("rate limits", "pass", "rate limiting is off")
    configured = limiting.configured_limits(app.config)
    if configured:
        return CheckResult("rate limits", "pass", ", ".join(configured) + " set")
    return CheckResult(
        "rate limits",
        "warn",
        "no app-wide limit is configured, so only views with their own limit are limited;"
        " RATELIMIT_APPLICATION = '100 per minute' limits each client across the app",
    )


def check_rate_limit_storage(app: Flask, workers: int) -> CheckResult:
    limiter = limiting.limiter_of(app)
    if limiter is None or not limiter.enabled:
        return CheckResult("rate limit storage", "pass", "rate limiting is off")
    problem = limiting.shared_memory_problem(limiter.storage, workers)
    if problem:
        return CheckResult("rate limit storage", "warn", problem)
    return CheckResult("rate limit storage", "pass", f"{workers} worker(s), counters hold")


def _metadata_field(name: str) -> str | None:
    try:
        value: str | None = importlib.metadata.metadata(DISTRIBUTION)[name]
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return None
    return value
