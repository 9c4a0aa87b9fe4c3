"""``flask resilience check|status|probe`` and RESILIENCE_VALIDATE_ON_STARTUP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import Result
from flask import Flask
from flask.cli import ScriptInfo

from flask_resilience import Resilience, ResilienceWarning, StartupCheckFailed, startup
from flask_resilience.cli import resilience_group
from flask_resilience.state import HealthCheck
from tests.support.paths import ROOT
from tests.support.servers import (
    PostgresServer,
    free_port,
    gunicorn_options,
    port_is_open,
    wait_until,
)

PRODUCTION_COOKIES = {
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # With no app-wide rate limit the checks give advice, which this file tests apart.
    "RATELIMIT_APPLICATION": "100 per minute",
}


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(resilience_group, list(args))


def checked_app(make_app: Callable[..., Flask], **config: Any) -> Flask:
    app = make_app(**{**PRODUCTION_COOKIES, **config})
    Resilience(app)
    return app


def by_name(output: str) -> dict[str, dict[str, str]]:
    return {check["name"]: check for check in json.loads(output)["checks"]}


@pytest.mark.postgres
@pytest.mark.redis
def test_check_passes_with_everything_in_place(
    make_app: Callable[..., Flask], postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    app = checked_app(
        make_app,
        SQLALCHEMY_DATABASE_URI=postgres_url,
        SQLALCHEMY_BINDS={"reports": {"url": postgres_url}},
        RATELIMIT_STORAGE_URI=redis_url,
        UPLOAD_FOLDER=str(uploads),
    )
    result = run(app, "check")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    for name in (
        "python",
        "libmagic",
        "package Flask",
        "folder UPLOAD_FOLDER",
        "database default",
        "database reports",
        "redis RATELIMIT_STORAGE_URI",
        "SECRET_KEY",
        "cookies",
        "rate limits",
        "rate limit storage",
    ):
        assert any(line.startswith(name + " ") and " pass " in line for line in lines), name
    assert lines[-1].endswith("0 warnings, 0 failed")


@pytest.mark.postgres
def test_check_fails_on_an_unreachable_database(
    make_app: Callable[..., Flask], pg: PostgresServer
) -> None:
    app = checked_app(make_app, SQLALCHEMY_DATABASE_URI=pg.url, RESILIENCE_STARTUP_RETRIES=1)
    pg.stop()
    result = run(app, "check", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["ok"] is False
    database = by_name(result.output)["database default"]
    assert database["status"] == "fail"
    assert "unreachable after 1 attempts" in database["detail"]
    assert pg.url.split("@")[-1] in database["detail"]


@pytest.mark.postgres
def test_check_waits_for_a_database_that_starts_later(
    make_app: Callable[..., Flask], pg: PostgresServer
) -> None:
    app = checked_app(make_app, SQLALCHEMY_DATABASE_URI=pg.url)
    pg.stop()
    starter = threading.Timer(2.0, pg.restart)
    starter.start()
    try:
        result = run(app, "check", "--json", "--retries", "6")
    finally:
        starter.join()
    assert result.exit_code == 0, result.output
    detail = by_name(result.output)["database default"]["detail"]
    assert "reachable after" in detail and "attempts" in detail


@pytest.mark.redis
def test_check_fails_on_an_unreachable_redis(make_app: Callable[..., Flask]) -> None:
    app = checked_app(make_app, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = run(app, "check", "--json", "--retries", "2")
    assert result.exit_code == 1
    assert by_name(result.output)["redis REDIS_URL"]["status"] == "fail"


def test_warnings_never_fail_the_check(make_app: Callable[..., Flask]) -> None:
    app = make_app(SESSION_COOKIE_HTTPONLY=False, REMEMBER_COOKIE_SECURE=False)
    with pytest.warns(ResilienceWarning) as warned_at_init:
        Resilience(app)
    assert any("SESSION_COOKIE_HTTPONLY" in str(w.message) for w in warned_at_init)
    result = run(app, "check", "--json", "--workers", "3")
    assert result.exit_code == 0, result.output
    warned = [c for c in json.loads(result.output)["checks"] if c["status"] == "warn"]
    details = " ".join(check["detail"] for check in warned)
    for text in (
        "SESSION_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "SESSION_COOKIE_SAMESITE",
        "REMEMBER_COOKIE_SECURE",
        "RATELIMIT_STORAGE_URI=redis://",
    ):
        assert text in details


@pytest.mark.parametrize(
    ("key", "status"),
    [
        (None, "fail"),
        ("dev", "fail"),
        ("short-key", "fail"),
        ("a" * 40, "fail"),
        pytest.param(os.urandom(8), "fail", id="8 random bytes"),
        pytest.param(os.urandom(24), "pass", id="24 random bytes"),
        ("kX9-2mQ_vL7pR4tZ8wN1yB6cF3hJ5sD0", "pass"),
    ],
)
def test_secret_key_strength(key: Any, status: str) -> None:
    checked = by_check_name(startup.check_session_settings({"SECRET_KEY": key, **SAFE_FLAGS}))
    assert checked["SECRET_KEY"].status == status


SAFE_FLAGS = {"SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_SAMESITE": "Lax"}


def by_check_name(results: list[startup.CheckResult]) -> dict[str, startup.CheckResult]:
    return {result.name: result for result in results}


@pytest.mark.parametrize("setup", ["DEBUG", "TESTING"])
def test_session_settings_are_not_audited_in_debug_or_testing(setup: str) -> None:
    """One policy with init_app, which gives no advice in debug or testing either."""
    results = startup.check_session_settings({"SECRET_KEY": "dev", setup: True})
    assert [(r.name, r.status) for r in results] == [("SECRET_KEY", "pass"), ("cookies", "pass")]
    assert all(r.detail == "not checked in debug or testing" for r in results)


def test_folders_must_exist_and_be_writable(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    app = checked_app(
        make_app,
        UPLOAD_FOLDER=str(tmp_path / "missing" / "uploads"),
        RESILIENCE_FOLDERS=[str(read_only), str(tmp_path), str(a_file), str(a_file / "below")],
    )
    try:
        result = run(app, "check", "--json")
        checks = by_name(result.output)
    finally:
        read_only.chmod(0o700)
    assert result.exit_code == 1
    # Missing, but creatable on first use: worth a warning, not a refusal.
    assert checks["folder UPLOAD_FOLDER"]["status"] == "warn"
    assert "can be created" in checks["folder UPLOAD_FOLDER"]["detail"]
    assert checks["folder RESILIENCE_FOLDERS[1]"]["status"] == "pass"
    assert checks["folder RESILIENCE_FOLDERS[2]"]["detail"].endswith("is not a folder")
    assert checks["folder RESILIENCE_FOLDERS[3]"]["status"] == "fail"
    assert "cannot be created" in checks["folder RESILIENCE_FOLDERS[3]"]["detail"]
    if os.geteuid() != 0:  # root writes anywhere
        assert checks["folder RESILIENCE_FOLDERS[0]"]["status"] == "fail"


def test_a_missing_package_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    requires = importlib.metadata.requires("flask-resilience") or []
    monkeypatch.setattr(
        importlib.metadata,
        "requires",
        lambda name: [*requires, "surely-not-installed-package>=1", "Flask>=999"],
    )
    results = {r.name: r for r in startup.check_packages()}
    assert results["package surely-not-installed-package"].status == "fail"
    assert results["package Flask"].status == "fail"
    assert "required" in results["package Flask"].detail


def test_an_app_that_cannot_load_fails_the_check() -> None:
    def broken() -> Flask:
        raise RuntimeError("no config")

    from click.testing import CliRunner

    result = CliRunner().invoke(resilience_group, ["check"], obj=ScriptInfo(create_app=broken))
    assert result.exit_code == 1
    assert "cannot load the app: no config" in result.output


@pytest.mark.postgres
def test_validate_on_startup_refuses_to_start(
    make_app: Callable[..., Flask], pg: PostgresServer
) -> None:
    app = make_app(
        SQLALCHEMY_DATABASE_URI=pg.url,
        RESILIENCE_VALIDATE_ON_STARTUP=True,
        RESILIENCE_STARTUP_RETRIES=1,
        **PRODUCTION_COOKIES,
    )
    pg.stop()
    with pytest.raises(StartupCheckFailed, match="database default") as raised:
        Resilience(app)
    assert any(result.status == "fail" for result in raised.value.results)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@pytest.mark.postgres
def test_a_worker_replaced_while_the_database_is_down_starts_and_the_server_stays(
    pg: PostgresServer, tmp_path: Path
) -> None:
    # A worker refusing to start makes gunicorn stop the whole server, which would turn
    # a database down for a few seconds while a worker is recycled into an outage.
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--config",
        "tests/lifecycle/gunicorn_conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        *gunicorn_options(),
        "tests.lifecycle.startup_app:create_app()",
    ]
    env = {**os.environ, "STARTUP_DATABASE_URL": pg.url, "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/one"
    try:
        assert wait_until(lambda: port_is_open(port) and _status(url) == 200, 20)
        first_workers = psutil.Process(server.pid).children()
        pg.stop()
        first_workers[0].kill()
        assert wait_until(
            lambda: server.poll() is not None or "Startup check database" in log_path.read_text(),
            20,
        ), log_path.read_text()
        assert server.poll() is None, log_path.read_text()
        assert _status(url) == 503
        pg.start()
        assert wait_until(lambda: _status(url) == 200, 10)
        assert server.poll() is None, log_path.read_text()
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
        if not pg.is_running():
            pg.start()


def test_validate_on_startup_passes_and_gives_each_advice_once(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(RESILIENCE_VALIDATE_ON_STARTUP=True)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        Resilience(app)
    # The startup checks say it, in the log; init_app does not say it again as a warning.
    assert [w for w in warned if issubclass(w.category, ResilienceWarning)] == []
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Startup check")]
    assert len([m for m in said if "SESSION_COOKIE_SECURE is False" in m]) == 1
    assert len([m for m in said if "RATELIMIT_APPLICATION" in m]) == 1


def test_the_check_advises_when_nothing_is_rate_limited(make_app: Callable[..., Flask]) -> None:
    app = make_app(**{**PRODUCTION_COOKIES, "RATELIMIT_APPLICATION": None})
    Resilience(app)
    checks = by_name(run(app, "check", "--json").output)
    assert checks["rate limits"]["status"] == "warn"
    assert "RATELIMIT_APPLICATION = '100 per minute'" in checks["rate limits"]["detail"]
    limited = make_app(**PRODUCTION_COOKIES)
    Resilience(limited)
    assert by_name(run(limited, "check", "--json").output)["rate limits"]["status"] == "pass"


def test_the_check_command_reports_instead_of_refusing(make_app: Callable[..., Flask]) -> None:
    def create() -> Flask:
        app = make_app(RESILIENCE_VALIDATE_ON_STARTUP=True, SECRET_KEY=None)
        Resilience(app)
        return app

    from click.testing import CliRunner

    result = CliRunner().invoke(resilience_group, ["check"], obj=ScriptInfo(create_app=create))
    assert result.exit_code == 1
    assert "SECRET_KEY" in result.output and "fail" in result.output


# --- status and probe -------------------------------------------------------------------


HEALTH_TOKEN = "a-health-token-for-the-status-command"


def health_app(make_app: Callable[..., Flask], **config: Any) -> Flask:
    app = make_app(RESILIENCE_SHUTDOWN_TIMEOUT=1, RESILIENCE_HEALTH_TOKEN=HEALTH_TOKEN, **config)
    Resilience(app)
    return app


@pytest.fixture
def serving(make_app: Callable[..., Flask], serve: Callable[[Flask], str]) -> tuple[Flask, str]:
    app = health_app(make_app)
    return app, serve(app)


def test_probe_over_http(serving: tuple[Flask, str]) -> None:
    app, url = serving
    from click.testing import CliRunner

    def never() -> Flask:
        raise AssertionError("probe --url must not load the app")

    runner = CliRunner()
    info = ScriptInfo(create_app=never)
    assert runner.invoke(resilience_group, ["probe", "live", "--url", url], obj=info).exit_code == 0
    app.extensions["resilience"].draining.set()
    assert (
        runner.invoke(resilience_group, ["probe", "ready", "--url", url], obj=info).exit_code == 1
    )
    started = time.monotonic()
    unreachable = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(resilience_group, ["probe", "live", "--url", unreachable], obj=info)
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert time.monotonic() - started < 5


def test_status_without_a_health_endpoint_prints_the_extensions_sections(
    make_app: Callable[..., Flask],
) -> None:
    app = health_app(make_app, RESILIENCE_HEALTH_ENABLED=False)
    result = run(app, "status")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["draining"] is False
    assert summary["rate_limit"]["status"] == "ok"


def test_status_prints_the_detailed_health(serving: tuple[Flask, str]) -> None:
    app, url = serving
    app.extensions["resilience"].health_checks["broken"] = HealthCheck(
        "broken", lambda: False, critical=True
    )

    in_process = run(app, "status")
    assert in_process.exit_code == 1
    report = json.loads(in_process.output)
    assert report["status"] == "fail"
    assert report["checks"]["broken"][0]["status"] == "fail"

    over_http = run(app, "status", "--url", url, "--token", HEALTH_TOKEN)
    assert over_http.exit_code == 1
    assert json.loads(over_http.output)["checks"]["broken"][0]["status"] == "fail"

    refused = run(app, "status", "--url", url)
    assert refused.exit_code == 1
    assert json.loads(refused.output)["status"] == 401


def test_sqlite_binds_and_no_rate_limiting(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = checked_app(
        make_app,
        RATELIMIT_ENABLED=False,
        SQLALCHEMY_BINDS={"local": f"sqlite:///{tmp_path / 'local.db'}", "none": {}},
    )
    checks = by_name(run(app, "check", "--json").output)
    assert checks["database local"]["status"] == "pass"
    assert "database none" not in checks
    assert checks["rate limit storage"]["detail"] == "rate limiting is off"


def test_a_relative_sqlite_path_is_checked_in_the_instance_folder(
    make_app: Callable[..., Flask], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Flask-SQLAlchemy opens relative SQLite paths in the instance folder, which
    # does not exist yet here; the check must look there, not in the working directory.
    working_directory = tmp_path / "cwd"
    working_directory.mkdir()
    monkeypatch.chdir(working_directory)
    app = checked_app(make_app, SQLALCHEMY_DATABASE_URI="sqlite:///app.db")

    checks = by_name(run(app, "check", "--json").output)

    assert checks["database default"]["status"] == "pass"
    assert (tmp_path / "instance" / "app.db").exists()
    assert list(working_directory.iterdir()) == []


def test_status_of_an_app_without_the_extension(make_app: Callable[..., Flask]) -> None:
    result = run(make_app(), "status")
    assert "not initialised" in result.output


def test_the_flask_command_finds_the_group_through_its_entry_point(tmp_path: Path) -> None:
    import subprocess
    import sys

    flask = Path(sys.executable).parent / "flask"
    env = {
        **os.environ,
        "LIFECYCLE_CLEANUP_FILE": str(tmp_path / "cleanups.txt"),
        "PYTHONPATH": str(ROOT),
    }
    app = ["--app", "tests.lifecycle.served_app:create_app", "resilience"]

    def flask_command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(flask), *app, *args], env=env, capture_output=True, text=True, timeout=30
        )

    probe = flask_command("probe", "ready")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "ready: 200"
    check = flask_command("check", "--json")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["ok"] is True


def test_probe_fails_cleanly_when_the_app_cannot_load() -> None:
    from click.testing import CliRunner

    def broken() -> Flask:
        raise RuntimeError("no database")

    result = CliRunner().invoke(
        resilience_group, ["probe", "live"], obj=ScriptInfo(create_app=broken)
    )
    assert result.exit_code == 1
    assert "cannot load the app: no database" in result.output
