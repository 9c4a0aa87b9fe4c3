"""Rate limits: defaults, 429 problem documents, client keys, Redis, failing open."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_limiter import Limiter, RateLimitExceeded

from flask_resilience import Resilience, ResilienceWarning, limiting, server
from flask_resilience.log import hide_password
from tests.support.servers import RedisServer, wait_until


def limited_app(
    make_app: Callable[..., Flask], resilience: Resilience | None = None, **config: Any
) -> tuple[Flask, Resilience]:
    app = make_app(**config)
    resilience = resilience or Resilience()

    @app.get("/")
    def index() -> str:
        return "hello"

    @app.get("/other")
    def other() -> str:
        return "other"

    @app.post("/login")
    @resilience.limit("2 per 15 minutes")
    def login() -> str:
        return "welcome"

    @app.get("/open")
    @resilience.exempt
    def open_view() -> str:
        return "open"

    @app.get("/health/ready")
    def ready() -> str:
        return "ready"

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("boom")

    resilience.init_app(app)
    return app, resilience


def limiter_of(app: Flask) -> Limiter:
    limiter = limiting.limiter_of(app)
    assert limiter is not None, "the app has no limiter"
    return limiter


def hit(client: FlaskClient, times: int, path: str = "/", **kwargs: Any) -> list[int]:
    return [client.get(path, **kwargs).status_code for _ in range(times)]


def test_nothing_is_limited_until_a_limit_is_set(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app)
    client = app.test_client()
    assert hit(client, 150) == [200] * 150
    response = client.get("/other")
    assert response.status_code == 200
    assert not any(name.startswith("X-RateLimit") for name, _ in response.headers)


def test_the_application_limit_is_shared_by_every_route(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app, RATELIMIT_APPLICATION="5 per minute")
    client = app.test_client()
    assert hit(client, 3) + hit(client, 2, "/other") == [200] * 5
    assert client.get("/").status_code == 429
    assert client.get("/other").status_code == 429
    assert client.get("/", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_the_default_limit_counts_each_route_apart(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app, RATELIMIT_DEFAULT="3 per minute")
    client = app.test_client()
    assert hit(client, 4) == [200, 200, 200, 429]
    assert hit(client, 4, "/other") == [200, 200, 200, 429]


def test_100_per_minute_per_client(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app, RATELIMIT_APPLICATION="100 per minute")
    client = app.test_client()
    assert hit(client, 100) == [200] * 100
    response = client.get("/")
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 429
    assert body["limit"] == "100 per 1 minute"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert body["detail"].startswith("Too many requests: the limit is 100 per 1 minute.")
    assert not any(name.startswith("X-Resilience") for name, _ in response.headers)
    # Another client has its own allowance.
    assert client.get("/", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_headers_and_retry_after_only_where_it_belongs(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app, RATELIMIT_APPLICATION="100 per minute")
    response = app.test_client().get("/")
    assert response.headers["X-RateLimit-Limit"] == "100"
    assert response.headers["X-RateLimit-Remaining"] == "99"
    assert "Retry-After" not in response.headers
    assert not any(name.startswith("X-Resilience") for name, _ in response.headers)


def test_decorated_limit_and_exemptions(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app, RATELIMIT_DEFAULT="1 per minute")
    client = app.test_client()
    assert [client.post("/login").status_code for _ in range(3)] == [200, 200, 429]
    assert (
        client.post("/login").get_json()["limit"] == "2 per 15 minute"
    )  # the limits library's spelling
    assert hit(client, 3, "/open") == [200] * 3
    assert hit(client, 3, "/health/ready") == [200] * 3  # health endpoints are exempt
    assert hit(client, 2) == [200, 429]


def test_browsers_get_an_html_429(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app, RATELIMIT_DEFAULT="1 per minute")
    client = app.test_client()
    client.get("/")
    response = client.get("/", headers={"Accept": "text/html"})
    assert response.status_code == 429
    assert response.mimetype == "text/html"
    assert "Retry-After" in response.headers
    assert "1 per 1 minute" in response.get_data(as_text=True)


def test_the_apps_own_429_handler_still_gets_flask_limiters_exception(
    make_app: Callable[..., Flask],
) -> None:
    app, _ = limited_app(make_app, RATELIMIT_DEFAULT="1 per minute")

    @app.errorhandler(RateLimitExceeded)
    def too_many(error: RateLimitExceeded) -> tuple[str, int]:
        return f"slow down: {error.description}", 429

    client = app.test_client()
    client.get("/")
    assert client.get("/").get_data(as_text=True) == "slow down: 1 per 1 minute"


def test_an_error_page_keeps_its_own_retry_after(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app)
    response = app.test_client().get("/fail")
    assert response.status_code == 500
    assert "Retry-After" not in response.headers


def test_without_trusted_proxies_forwarded_headers_are_ignored(
    make_app: Callable[..., Flask],
) -> None:
    app, _ = limited_app(make_app, RATELIMIT_DEFAULT="2 per minute")
    client = app.test_client()
    statuses = [
        client.get("/", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(3)
    ]
    assert statuses == [200, 200, 429]  # one bucket: the proxy's, not spoofable


def test_behind_trusted_proxies_each_client_has_its_own_bucket(
    make_app: Callable[..., Flask],
) -> None:
    app, _ = limited_app(make_app, RATELIMIT_DEFAULT="2 per minute", RESILIENCE_TRUSTED_PROXIES=1)
    client = app.test_client()
    alice = {"X-Forwarded-For": "203.0.113.1", "X-Forwarded-Proto": "https"}
    bob = {"X-Forwarded-For": "203.0.113.2"}
    assert hit(client, 3, headers=alice) == [200, 200, 429]
    assert hit(client, 2, headers=bob) == [200, 200]
    # A client cannot escape by prepending an address: the proxy's entry is the last one.
    assert client.get("/", headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.1"}).status_code == 429


def test_an_adopted_limiter_keeps_its_key_and_gets_the_defaults(
    make_app: Callable[..., Flask],
) -> None:
    limiter = Limiter(lambda: "everyone")
    resilience = Resilience(limiter=limiter)
    app, _ = limited_app(make_app, resilience, RATELIMIT_DEFAULT="1 per minute")
    assert resilience.limiter is limiter
    client = app.test_client()
    client.get("/")
    response = client.get("/", environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert response.status_code == 429
    assert response.get_json()["limit"] == "1 per 1 minute"


def test_a_limiter_initialised_first_is_used_with_a_warning(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(RATELIMIT_STORAGE_URI="memory://")
    limiter = Limiter(limiting.client_address, app=app)
    with pytest.warns(ResilienceWarning, match="initialised on this app before"):
        Resilience(app, limiter=limiter)
    assert limiting.limiter_of(app) is limiter


def test_rate_limiting_can_be_turned_off(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app, RATELIMIT_ENABLED=False, RATELIMIT_DEFAULT="1 per minute")
    assert hit(app.test_client(), 3) == [200] * 3
    assert "rate_limit" not in app.extensions["resilience"].detail_providers


def test_memory_storage_with_several_workers_warns(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    with pytest.warns(ResilienceWarning, match=r"4 worker.*RATELIMIT_STORAGE_URI=redis://"):
        limited_app(make_app)


def test_redis_storage_gets_short_timeouts_unless_set() -> None:
    config: dict[str, Any] = {"RATELIMIT_STORAGE_URI": "redis://localhost:6379/0"}
    limiting.fill_defaults(config)
    assert config["RATELIMIT_STORAGE_OPTIONS"] == {
        "socket_connect_timeout": 1.0,
        "socket_timeout": 1.0,
    }
    config = {
        "RATELIMIT_STORAGE_URI": "redis://localhost:6379/0?socket_timeout=3",
        "RATELIMIT_STORAGE_OPTIONS": {"socket_connect_timeout": 2},
    }
    limiting.fill_defaults(config)
    assert config["RATELIMIT_STORAGE_OPTIONS"] == {"socket_connect_timeout": 2}
    config = {"RATELIMIT_STORAGE_URI": "memcached://localhost:11211"}
    limiting.fill_defaults(config)
    assert "RATELIMIT_STORAGE_OPTIONS" not in config


def test_hide_password_hides_the_password() -> None:
    assert hide_password("redis://:s3cret@cache:6380/1") == "redis://:***@cache:6380/1"
    assert hide_password("redis://user:pw@cache/0") == "redis://user:***@cache/0"
    assert hide_password("memory://") == "memory://"
    assert hide_password("postgresql+psycopg://app:p%40ss@db:5432/app") == (
        "postgresql+psycopg://app:***@db:5432/app"
    )
    assert hide_password("not a url:99999999") == "not a url:99999999"


@pytest.mark.redis
def test_limits_are_shared_by_instances_through_redis(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    config: dict[str, Any] = {
        "RATELIMIT_STORAGE_URI": redis_url,
        "RATELIMIT_DEFAULT": "3 per minute",
    }
    one = limited_app(make_app, **config)[0].test_client()
    two = limited_app(make_app, **config)[0].test_client()
    statuses = [client.get("/").status_code for client in (one, two, one, two)]
    assert statuses == [200, 200, 200, 429]


@pytest.mark.redis
def test_a_redis_outage_fails_no_request_and_limits_return_with_redis(
    make_app: Callable[..., Flask], redis: RedisServer
) -> None:
    app, _ = limited_app(
        make_app, RATELIMIT_STORAGE_URI=redis.url, RATELIMIT_DEFAULT="5 per minute"
    )
    client = app.test_client()
    status = app.extensions["resilience"].detail_providers["rate_limit"]
    assert hit(client, 2) == [200, 200]
    assert status()["status"] == "ok"
    assert status()["storage"] == redis.url

    redis.kill()
    started = time.monotonic()
    # Counted in memory meanwhile: no request fails, the limit still holds per process.
    assert hit(client, 6) == [200] * 5 + [429]
    assert time.monotonic() - started < 5
    report = status()
    assert report["status"] == "degraded"
    assert report["reachable"] is False
    assert limiting.storage_health(limiter_of(app)) == "warn"

    redis.restart()
    # Flask-Limiter looks at the storage again with exponential backoff.
    other = {"environ_base": {"REMOTE_ADDR": "10.1.1.1"}}
    assert wait_until(
        lambda: client.get("/", **other).status_code in (200, 429) and (status()["status"] == "ok"),
        20,
        interval=0.5,
    ), status()
    assert limiting.storage_health(limiter_of(app)) == "pass"
    # Enforced through Redis again: another instance sees this one's count.
    another = limited_app(
        make_app, RATELIMIT_STORAGE_URI=redis.url, RATELIMIT_DEFAULT="5 per minute"
    )[0].test_client()
    fresh = {"REMOTE_ADDR": "10.2.2.2"}
    statuses = hit(client, 3, environ_base=fresh) + hit(another, 3, environ_base=fresh)
    assert statuses == [200] * 5 + [429]


def test_worker_count() -> None:
    assert server._workers_option(["-w", "3"]) == 3
    assert server._workers_option(["-w5", "--bind", "x"]) == 5
    assert server._workers_option(["--workers=7"]) == 7
    assert server._workers_option(["--workers", "2", "-w", "x"]) == 2
    assert server._workers_option(["app:create_app()"]) is None


def test_worker_count_under_gunicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["gunicorn", "-w", "4", "app:create_app()"])
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--workers 2")
    # What gunicorn's master has imported by the time it loads a preloaded app.
    monkeypatch.setitem(sys.modules, "gunicorn.arbiter", types.ModuleType("gunicorn.arbiter"))
    assert server.under_gunicorn()
    assert server.worker_count() == 4
    monkeypatch.setattr(server, "_gunicorn_workers", 3)  # what the post_fork hook records
    assert server.worker_count() == 3


def test_worker_count_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert server.worker_count() == 1
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert server.worker_count() == 3
    monkeypatch.setenv("WEB_CONCURRENCY", "zero")
    assert server.worker_count() == 1


def test_the_rate_limit_section_is_json(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app)
    section = app.extensions["resilience"].detail_providers["rate_limit"]()
    assert json.loads(json.dumps(section)) == {
        "status": "ok",
        "storage": "memory://",
        "reachable": True,
        "counting_in_memory_fallback": False,
    }


@pytest.mark.redis
def test_shutdown_closes_the_redis_connections(
    make_app: Callable[..., Flask], redis: RedisServer
) -> None:
    import redis as redis_lib

    observer = redis_lib.from_url(redis.url)
    app, resilience = limited_app(
        make_app, RATELIMIT_STORAGE_URI=redis.url, RATELIMIT_APPLICATION="10 per minute"
    )

    def clients() -> int:
        return len(observer.client_list())

    before = clients()
    app.test_client().get("/")
    assert clients() == before + 1
    with app.app_context():
        resilience.shutdown()
    assert clients() == before
    observer.close()


def test_a_blueprint_can_be_exempt(make_app: Callable[..., Flask]) -> None:
    from flask import Blueprint

    resilience = Resilience()
    public = Blueprint("public", __name__)
    public.add_url_rule("/public", "page", lambda: "page")
    resilience.exempt(public)
    app, _ = limited_app(make_app, resilience, RATELIMIT_DEFAULT="1 per minute")
    app.register_blueprint(public)
    assert hit(app.test_client(), 3, "/public") == [200] * 3


def test_the_storage_is_a_non_critical_health_check(make_app: Callable[..., Flask]) -> None:
    app, _ = limited_app(make_app)
    check = app.extensions["resilience"].health_checks["ratelimit:storage"]
    assert check.critical is False
    assert check.func() == "pass"
    # The app's own, not the extension's: another app of the instance has its own.


@pytest.mark.redis
def test_redis_killed_while_requests_are_being_served(
    make_app: Callable[..., Flask], redis: RedisServer
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    app, _ = limited_app(
        make_app, RATELIMIT_STORAGE_URI=redis.url, RATELIMIT_DEFAULT="10000/minute"
    )
    killed = threading.Event()

    def client_loop(number: int) -> list[int]:
        client = app.test_client()
        environ = {"REMOTE_ADDR": f"10.0.0.{number}"}
        statuses: list[int] = []
        while len(statuses) < 400:
            statuses.append(client.get("/", environ_base=environ).status_code)
            if len(statuses) == 100 and number == 0:
                redis.kill()
                killed.set()
        return statuses

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(client_loop, range(4)))
    assert killed.is_set()
    assert all(status == 200 for statuses in results for status in statuses)
    assert app.extensions["resilience"].detail_providers["rate_limit"]()["status"] == "degraded"


@pytest.mark.parametrize("mode", ["legacy", "ietf", "both"])
def test_the_ietf_draft_headers_name_every_limit_that_applied(
    make_app: Callable[..., Flask], mode: str
) -> None:
    app, _ = limited_app(
        make_app,
        RESILIENCE_RATELIMIT_HEADERS=mode,
        RATELIMIT_APPLICATION="100 per minute",
        RATELIMIT_DEFAULT="3 per second",
    )
    client = app.test_client()
    client.get("/")
    response = client.get("/")
    legacy = response.headers.get("X-RateLimit-Limit")
    assert (legacy is not None) == (mode != "ietf")
    if mode == "legacy":
        assert "RateLimit" not in response.headers
        return
    policies = response.headers["RateLimit-Policy"].split(", ")
    assert sorted(policies) == ['"100 per 1 minute";q=100;w=60', '"3 per 1 second";q=3;w=1']
    states = dict(item.split(";", 1) for item in response.headers["RateLimit"].split(", "))
    remaining = {name: dict(p.split("=") for p in rest.split(";")) for name, rest in states.items()}
    assert remaining['"3 per 1 second"']["r"] == "1"
    assert remaining['"100 per 1 minute"']["r"] == "98"
    assert 0 <= int(remaining['"100 per 1 minute"']["t"]) <= 60
    assert client.get("/").status_code == 200
    refused = client.get("/")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"]  # whatever the headers, a 429 says when to retry
