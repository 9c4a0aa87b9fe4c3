"""The health endpoints and the check runner: bounded, parallel, cached, single flight."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from flask_resilience import ConfigurationError, Resilience
from flask_resilience.health import HealthResult, health_state
from flask_resilience.health.checks import scrub
from flask_resilience.health.system import cgroup_memory, memory_usage
from tests.health.apps import PASSWORD, TOKEN, create_app, extension_of
from tests.support.servers import PostgresServer, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}


pytestmark = pytest.mark.config(RESILIENCE_MONITOR_ENABLED=False)


def body(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def test_live_answers_without_any_check(resilience: Resilience, client: FlaskClient) -> None:
    calls = []

    @resilience.health_check("db", critical=True)
    def db_down() -> bool:
        calls.append(1)
        return False

    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.mimetype == "application/health+json"
    assert body(response) == {"status": "pass"}
    assert calls == []
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").status_code == 200


def test_live_is_answered_before_flask(app: Flask, client: FlaskClient) -> None:
    hooks = []
    app.before_request(lambda: hooks.append(1))
    response = client.head("/health/live")
    assert (response.status_code, response.data) == (200, b"")
    assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/health/live").mimetype == "application/health+json"
    assert hooks == []  # no other part's hook can fail the liveness probe
    with app.test_request_context("/health/live"):
        fallback = app.view_functions["resilience_health.live"]()
    assert isinstance(fallback, Response)
    assert json.loads(fallback.data) == {"status": "pass"}


def test_overall_answer_follows_the_ietf_draft(resilience: Resilience, client: FlaskClient) -> None:
    @resilience.health_check("queue:depth")
    def queue() -> HealthResult:
        return HealthResult("warn", observed_value=1500, observed_unit="jobs", output="deep")

    response = client.get("/health")
    assert response.status_code == 200
    assert response.mimetype == "application/health+json"
    assert response.headers["Cache-Control"] == "max-age=5"
    data = body(response)
    assert data["status"] == "warn"
    entry = data["checks"]["queue:depth"][0]
    assert entry["status"] == "warn"
    assert entry["observedValue"] == 1500
    assert entry["observedUnit"] == "jobs"
    assert entry["time"].endswith("Z")
    assert "output" not in entry  # details only in detailed
    assert {"memory:utilization", "disk:utilization"} <= set(data["checks"])


@pytest.mark.config(RESILIENCE_HEALTH_CACHE_TTL_FAILED=0)
def test_failing_critical_check_fails_and_other_failures_warn(
    app: Flask, resilience: Resilience, client: FlaskClient
) -> None:
    outcome = {"critical": True}

    @resilience.health_check("optional")
    def optional() -> bool:
        return False

    @resilience.health_check("needed", critical=True)
    def needed() -> bool:
        return outcome["critical"]

    response = client.get("/health")
    assert response.status_code == 200
    assert body(response)["status"] == "warn"
    assert client.get("/health/ready").status_code == 200
    assert "optional" not in body(client.get("/health/ready"))["checks"]

    outcome["critical"] = False
    # The pass is cached for the TTL; clear it as the TTL would.
    health_state(app).runner.clear()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.headers["Cache-Control"] == "max-age=0"
    assert body(response)["status"] == "fail"


@pytest.mark.parametrize(
    ("returned", "status", "output"),
    [
        (True, "pass", None),
        (None, "pass", None),
        (False, "fail", None),
        ("warn", "warn", None),
        ("fail", "fail", None),
        ("broken", "fail", "the check returned str, not a status"),
        (42, "fail", "the check returned int, not a status"),
        (HealthResult("pass", 3, "ms", "fine"), "pass", None),  # no output on a pass
        (HealthResult("warn", 3, "ms", "slow"), "warn", "slow"),
        (HealthResult("nonsense"), "fail", "the check returned HealthResult, not a status"),
    ],
)
def test_what_a_check_returns(
    resilience: Resilience, client: FlaskClient, returned: Any, status: str, output: str | None
) -> None:
    resilience.health_check("thing")(lambda: returned)
    entry = body(client.get("/health/detailed", headers=AUTH))["checks"]["thing"][0]
    assert (entry["status"], entry.get("output")) == (status, output)


def test_a_raising_check_is_a_safe_fail_not_a_500(
    resilience: Resilience, client: FlaskClient
) -> None:
    @resilience.health_check("db", critical=True)
    def explode() -> None:
        raise RuntimeError(f"cannot reach postgresql://app:{PASSWORD}@db/app")

    response = client.get("/health/detailed", headers=AUTH)
    assert response.status_code == 503
    entry = body(response)["checks"]["db"][0]
    assert entry == entry | {"status": "fail", "output": "the check raised RuntimeError"}
    assert PASSWORD.encode() not in response.data
    assert client.get("/health/ready").status_code == 503


@pytest.mark.config(RESILIENCE_HEALTH_CACHE_TTL_FAILED=0)
def test_a_hanging_check_is_bounded_and_never_piles_up(
    resilience: Resilience, client: FlaskClient
) -> None:
    release = threading.Event()
    starts = []

    @resilience.health_check("hung", critical=True, timeout=0.3)
    def hung() -> None:
        starts.append(1)
        release.wait(60)

    try:
        # The check hangs for 60 s: an answer within seconds was bounded by the timeout.
        started = time.perf_counter()
        response = client.get("/health/ready")
        assert 0.3 <= time.perf_counter() - started < 0.3 + 2
        assert response.status_code == 503
        entry = body(client.get("/health/detailed", headers=AUTH))["checks"]["hung"][0]
        assert entry["output"] == "timed out"

        # Waiting for the same hung run again would cost each request its 0.3 s;
        # answering at once, 1000 requests take a fraction of that.
        threads = threading.active_count()
        started = time.perf_counter()
        for _ in range(1000):
            assert client.get("/health/ready").status_code == 503
        assert time.perf_counter() - started < 1000 * 0.3 / 10
        # Flat: never more threads (other tests' idle threads may end meanwhile).
        assert threading.active_count() <= threads
        names = [thread.name for thread in threading.enumerate()]
        assert names.count("health-check:hung") == 1
        assert starts == [1]
    finally:
        release.set()


@pytest.mark.config(RESILIENCE_HEALTH_CACHE_TTL_FAILED=0)
def test_a_stuck_check_is_run_again_once_it_finished(
    app: Flask, resilience: Resilience, client: FlaskClient
) -> None:
    release = threading.Event()
    runs = []

    @resilience.health_check("slow", critical=True, timeout=0.1)
    def slow() -> bool:
        runs.append(1)
        return release.wait(5)

    assert client.get("/health/ready").status_code == 503
    release.set()
    runner = health_state(app).runner
    assert wait_until(lambda: runner.running() == [], 2)
    # It finished late, counted as a fail; the next probe runs it again.
    assert client.get("/health/ready").status_code == 200
    assert len(runs) == 2


def test_checks_run_in_parallel(resilience: Resilience, client: FlaskClient) -> None:
    for number in range(5):
        resilience.health_check(f"slow{number}")(lambda: time.sleep(0.3))
    started = time.perf_counter()
    data = body(client.get("/health"))
    elapsed = time.perf_counter() - started
    assert all(data["checks"][f"slow{n}"][0]["status"] == "pass" for n in range(5))
    assert elapsed < 0.4


def test_single_flight_under_concurrent_calls(app: Flask, resilience: Resilience) -> None:
    runs = []

    @resilience.health_check("db", critical=True)
    def db() -> bool:
        runs.append(1)
        time.sleep(0.3)
        return True

    barrier = threading.Barrier(200)
    statuses = []

    def probe() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.get("/health/ready").status_code)

    threads = [threading.Thread(target=probe) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 200
    assert len(runs) == 1


@pytest.mark.config(RESILIENCE_HEALTH_CACHE_TTL=0, RESILIENCE_HEALTH_CACHE_TTL_FAILED=0)
def test_a_check_that_keeps_raising_logs_one_traceback_per_streak(
    resilience: Resilience, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    failing = {"now": True}

    @resilience.health_check("db", critical=True)
    def database() -> bool:
        if failing["now"]:
            raise ConnectionError(f"cannot reach postgresql://app:{PASSWORD}@db/app\nmore")
        return True

    def poll(times: int) -> list[int]:
        return [client.get("/health/ready").status_code for _ in range(times)]

    with caplog.at_level(logging.INFO):
        assert poll(3) == [503] * 3
        failing["now"] = False
        assert poll(1) == [200]
        failing["now"] = True
        assert poll(2) == [503] * 2
    records = [r for r in caplog.records if "Health check 'db'" in r.getMessage()]
    assert [(r.levelno, r.exc_info is not None) for r in records] == [
        (logging.WARNING, True),
        (logging.INFO, False),
        (logging.INFO, False),
        (logging.WARNING, True),
        (logging.INFO, False),
    ]
    assert "still raises ConnectionError: cannot reach postgresql://app:***@db/app" in (
        records[1].getMessage()
    )
    assert all(PASSWORD not in r.getMessage() for r in records)


@pytest.mark.config(RESILIENCE_HEALTH_CACHE_TTL=0.6, RESILIENCE_HEALTH_CACHE_TTL_FAILED=0.2)
def test_results_are_cached_with_separate_ttls(resilience: Resilience, client: FlaskClient) -> None:
    answer = {"ok": True}
    runs = []

    @resilience.health_check("dep", critical=True)
    def dep() -> bool:
        runs.append(1)
        return answer["ok"]

    assert client.get("/health/ready").status_code == 200
    answer["ok"] = False
    assert client.get("/health/ready").status_code == 200  # the pass is still cached
    assert len(runs) == 1
    time.sleep(0.7)
    assert client.get("/health/ready").status_code == 503
    answer["ok"] = True
    assert client.get("/health/ready").status_code == 503  # the fail is cached, shorter
    time.sleep(0.3)
    assert client.get("/health/ready").status_code == 200
    assert len(runs) == 3


def test_ready_fails_while_draining(app: Flask, client: FlaskClient) -> None:
    assert client.get("/health/ready").status_code == 200
    app.extensions["resilience"].draining.set()
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert "draining" in body(response)["output"]
    assert client.get("/health/live").status_code == 200


PROTECTED = [
    ("GET", "/health/detailed"),
    ("GET", "/health/metrics"),
    ("GET", "/health/dashboard"),
    ("POST", "/health/monitoring/start"),
    ("POST", "/health/monitoring/stop"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_protected_endpoints_need_the_token(client: FlaskClient, method: str, path: str) -> None:
    refused = client.open(path, method=method)
    assert refused.status_code == 401
    assert refused.mimetype == "application/problem+json"
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="health"'
    assert body(refused)["detail"] == "A bearer token is required."
    wrong = {"Authorization": "Bearer not-the-token"}
    assert client.open(path, method=method, headers=wrong).status_code == 401
    basic = {"Authorization": f"Basic {TOKEN}"}
    assert client.open(path, method=method, headers=basic).status_code == 401
    assert client.open(path, method=method, headers=AUTH).status_code in (200, 503)
    assert client.open(path, method="OPTIONS").status_code == 200


def test_token_is_compared_in_constant_time(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    compared = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module the blueprint compares with
    assert client.get("/health/metrics", headers=AUTH).status_code == 200
    assert compared == [(TOKEN.encode(), TOKEN.encode())]


def test_without_token_protected_endpoints_are_refused_outside_debug(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_HEALTH_TOKEN=None)
    refused = app.test_client().get("/health/detailed", headers=AUTH)
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert "RESILIENCE_HEALTH_TOKEN" in body(refused)["detail"]
    assert app.test_client().get("/health/ready").status_code == 200
    app.debug = True
    assert app.test_client().get("/health/detailed").status_code in (200, 503)


def test_the_guards_permission_loader_opens_them(
    app: Flask, resilience: Resilience, client: FlaskClient
) -> None:
    from flask import request

    grants = {"ops": {"resilience:health"}, "guest": {"reports:read"}}

    @resilience.current_user_loader
    def load_user() -> str | None:
        return request.headers.get("X-User")

    @resilience.permission_loader
    def load_permissions(user: str) -> set[str]:
        return grants[user]

    assert client.get("/health/metrics", headers={"X-User": "ops"}).status_code == 200
    assert client.get("/health/metrics", headers={"X-User": "guest"}).status_code == 401
    assert client.get("/health/metrics").status_code == 401
    with app.test_request_context(headers={"X-User": "ops"}):
        assert resilience.has_permission("resilience:health")
    with app.test_request_context():
        assert not resilience.has_permission("resilience:health")


@pytest.mark.config(RESILIENCE_HEALTH_VERSION="2.4.1")
def test_detailed_shows_everything(app: Flask, client: FlaskClient) -> None:
    state = app.extensions["resilience"]
    state.detail_providers["circuit_breakers"] = lambda: {"payments": {"state": "open"}}
    state.detail_providers["queues"] = lambda: 1 / 0
    client.get("/")
    client.get("/fail")
    data = body(client.get("/health/detailed", headers=AUTH))
    assert 0 <= data["score"] <= 100
    assert data["version"] == "2.4.1"
    assert data["draining"] is False
    assert set(data["system"]) == {"cpu_percent", "memory", "disk"}
    assert data["system"]["memory"]["source"] in ("cgroup", "host")
    assert {"pid", "rss_bytes", "threads", "open_files", "uptime_seconds"} <= set(data["process"])
    window = data["requests"]["windows"]["60s"]
    assert window["requests"] == 2
    assert window["error_rate"] == 50.0
    assert window["latency_p95"] is not None
    assert data["circuit_breakers"] == {"payments": {"state": "open"}}
    assert data["rate_limit"]["storage"] == "memory://"
    assert data["queues"] == {"error": "unavailable"}
    assert data["monitor"]["level"] == "healthy"
    assert data["pools"] == {}
    assert "tracemalloc" not in data


def test_tracemalloc_on_demand(tmp_path: Path) -> None:
    import tracemalloc

    app = create_app(instance_path=str(tmp_path), RESILIENCE_TRACEMALLOC=True)
    try:
        client = app.test_client()
        data = body(client.get("/health/detailed?tracemalloc=1", headers=AUTH))
        assert data["tracemalloc"]
        assert {"where", "size_bytes", "count"} == set(data["tracemalloc"][0])
        assert "tracemalloc" not in body(client.get("/health/detailed", headers=AUTH))
    finally:
        tracemalloc.stop()


def test_health_can_be_turned_off_or_moved(tmp_path: Path) -> None:
    off = create_app(instance_path=str(tmp_path), RESILIENCE_HEALTH_ENABLED=False)
    assert off.test_client().get("/health/live").status_code == 404
    with off.app_context(), pytest.raises(RuntimeError, match="RESILIENCE_HEALTH_ENABLED"):
        extension_of(off).monitor  # noqa: B018
    moved = create_app(instance_path=str(tmp_path), RESILIENCE_HEALTH_URL_PREFIX="/_status")
    assert moved.test_client().get("/_status/live").status_code == 200
    assert moved.test_client().get("/_status").status_code == 200


def test_public_probes_are_exempt_from_rate_limits(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RATELIMIT_DEFAULT="2 per minute")
    client = app.test_client()
    for probe in ("/health", "/health/live", "/health/ready"):
        assert [client.get(probe).status_code for _ in range(4)] == [200] * 4
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RESILIENCE_ALERT_THRESHOLDS", {"cpu": 50}),
        ("RESILIENCE_ALERT_THRESHOLDS", {"cpu_usage": 0}),
        ("RESILIENCE_ALERT_THRESHOLDS", {"cpu_usage": "high"}),
        ("RESILIENCE_ALERT_THRESHOLDS", [80]),
        ("RESILIENCE_HEALTH_URL_PREFIX", "health"),
        ("RESILIENCE_HEALTH_URL_PREFIX", "/health/"),
        ("RESILIENCE_HEALTH_CHECK_TIMEOUT", 0),
        ("RESILIENCE_HEALTH_TOKEN", ""),
        ("RESILIENCE_ALERT_WARNING_MARGIN", 1.5),
        ("RESILIENCE_MONITOR_HISTORY", 0),
    ],
)
def test_wrong_configuration_is_refused(key: str, value: Any) -> None:
    app = Flask(__name__)
    app.config[key] = value
    with pytest.raises(ConfigurationError, match=key):
        Resilience(app)


def test_thresholds_merge_over_the_defaults() -> None:
    app = Flask(__name__)
    app.config["RESILIENCE_ALERT_THRESHOLDS"] = {"cpu_usage": 50}
    Resilience(app)
    limits = app.extensions["resilience"].settings.alert_thresholds
    assert limits["cpu_usage"] == 50
    assert limits["memory_usage"] == 85


def test_a_check_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Resilience().health_check("x", timeout=0)


def test_scrub_hides_credentials() -> None:
    text = scrub(f"postgresql://app:{PASSWORD}@db/app password={PASSWORD} " + "x" * 400)
    assert PASSWORD not in text
    assert "postgresql://app:***@db/app" in text
    assert len(text) == 300


def test_memory_is_a_share_of_the_cgroup_limit(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("1000000\n")
    (v2 / "memory.current").write_text("600000\n")
    (v2 / "memory.stat").write_text("anon 1\ninactive_file 100000\n")
    assert cgroup_memory(v2) == (500000, 1000000)
    assert memory_usage(v2)["percent"] == 50.0
    assert memory_usage(v2)["source"] == "cgroup"

    (v2 / "memory.max").write_text("max\n")
    assert cgroup_memory(v2) is None
    assert memory_usage(v2)["source"] == "host"

    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("2000000\n")
    (v1 / "memory.usage_in_bytes").write_text("500000\n")
    assert cgroup_memory(tmp_path / "v1") == (500000, 2000000)
    (v1 / "memory.limit_in_bytes").write_text(str(2**63 - 4096))
    assert cgroup_memory(tmp_path / "v1") is None


def test_disk_checks_cover_the_upload_folder(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path / "missing"), UPLOAD_FOLDER=str(tmp_path))
    data = body(app.test_client().get("/health"))
    assert data["checks"]["disk.uploads:utilization"][0]["observedUnit"] == "percent"
    assert data["checks"]["disk:utilization"][0]["status"] in ("pass", "warn", "fail")


# -- a real PostgreSQL server -------------------------------------------------------------


@pytest.fixture
def db_app(health_postgres: PostgresServer, tmp_path: Path) -> Iterator[Flask]:
    db = SQLAlchemy()
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(
        SQLALCHEMY_DATABASE_URI=health_postgres.url,
        SQLALCHEMY_BINDS={"reports": health_postgres.url},
        RESILIENCE_HEALTH_TOKEN=TOKEN,
        RESILIENCE_HEALTH_CACHE_TTL=0.2,
        RESILIENCE_HEALTH_CACHE_TTL_FAILED=3.0,
        RESILIENCE_MONITOR_INTERVAL=0.2,
    )
    db.init_app(app)
    Resilience(app, db=db)
    yield app
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_database_down_fails_readiness_not_liveness(
    db_app: Flask, health_postgres: PostgresServer
) -> None:
    client = db_app.test_client()
    data = body(client.get("/health/ready"))
    assert data["status"] == "pass"
    assert set(data["checks"]) == {"database:responseTime", "database.reports:responseTime"}
    assert data["checks"]["database:responseTime"][0]["observedUnit"] == "ms"

    health_postgres.stop()
    try:
        time.sleep(0.3)  # past the pass TTL
        started = time.perf_counter()
        assert client.get("/health/ready").status_code == 503
        assert time.perf_counter() - started < 1.1
        assert client.get("/health/live").status_code == 200
        failed_at = time.monotonic()
        detailed = body(client.get("/health/detailed", headers=AUTH))
        assert detailed["checks"]["database:responseTime"][0]["output"].startswith(
            "the check raised"
        )
    finally:
        health_postgres.start()
    if time.monotonic() - failed_at < 2.5:
        assert client.get("/health/ready").status_code == 503  # the failure is cached
    assert wait_until(lambda: client.get("/health/ready").status_code == 200, 3.0 + 2)
    assert time.monotonic() - failed_at > 3.0


def test_no_secret_in_any_health_body(db_app: Flask) -> None:
    client = db_app.test_client()
    client.get("/")
    responses = [
        client.get("/health"),
        client.get("/health/live"),
        client.get("/health/ready"),
        client.get("/health/detailed", headers=AUTH),
        client.get("/health/detailed?history=5", headers=AUTH),
        client.get("/health/metrics", headers=AUTH),
        client.get("/health/dashboard", headers=AUTH),
        client.post("/health/monitoring/start", headers=AUTH),
        client.post("/health/monitoring/stop", headers=AUTH),
        client.get("/health/detailed"),
    ]
    for response in responses:
        assert PASSWORD.encode() not in response.data
        assert b"postgresql" not in response.data
        assert TOKEN.encode() not in response.data
    detailed = body(responses[3])
    pool = detailed["pools"]["default"]
    assert pool["pool"] == "QueuePool"
    assert pool["limits"]["pool_size"] == 10
    assert "url" not in pool


def test_health_score() -> None:
    from flask_resilience.health.blueprint import _score
    from flask_resilience.health.checks import Outcome

    def outcome(status: str, critical: bool = False) -> Outcome:
        return Outcome("x", status, critical, 0.0, "t")

    assert _score({}, "healthy") == 100
    assert _score({"a": outcome("fail", critical=True)}, "healthy") == 60
    assert _score({"a": outcome("fail"), "b": outcome("warn")}, "warning") == 70
    many = {str(n): outcome("fail", critical=True) for n in range(4)}
    assert _score(many, "critical") == 0


def test_a_client_cannot_claim_to_be_an_in_process_caller(client: FlaskClient) -> None:
    forged = {"flask_resilience.in_process": "1", "Flask-Resilience-In-Process": "1"}
    assert client.get("/health/detailed", headers=forged).status_code == 401
