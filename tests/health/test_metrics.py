"""Prometheus metrics of one process (several workers: test_gunicorn.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flask_resilience.health.builtin import level_status, redis_checks
from flask_resilience.health.metrics import Metrics, _breaker_states, mark_process_dead
from flask_resilience.health.stats import RequestLog, RequestStats
from tests.health.apps import TOKEN, create_app, scrape


def test_requests_errors_and_latency_by_endpoint(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    client = app.test_client()
    for _ in range(3):
        client.get("/")
    client.get("/fail")
    client.get("/nowhere")
    client.get("/health/live")  # probes are not the app's traffic
    values = scrape(client)
    hello = (("endpoint", "hello"), ("method", "GET"), ("status", "200"))
    assert values[("resilience_http_requests_total", hello)] == 3
    assert values[("resilience_http_errors_total", (("endpoint", "fail"),))] == 1
    unmatched = (("endpoint", "<unmatched>"), ("method", "GET"), ("status", "404"))
    assert values[("resilience_http_requests_total", unmatched)] == 1
    count = (
        "resilience_http_request_duration_seconds_count",
        (("endpoint", "hello"), ("status", "200")),
    )
    assert values[count] == 3
    assert not any(
        dict(labels).get("endpoint", "").startswith("resilience_health") for _, labels in values
    )
    assert values[("resilience_process_resident_memory_bytes", ())] > 0
    assert values[("resilience_process_threads", ())] >= 1
    assert values[("resilience_alert_level", ())] == 0
    assert 0 <= values[("resilience_system_usage_ratio", (("resource", "memory"),))] <= 1


def test_two_apps_in_one_process_keep_their_own_registry(tmp_path: Path) -> None:
    first = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    second = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    first.test_client().get("/")
    hello = (
        "resilience_http_requests_total",
        (("endpoint", "hello"), ("method", "GET"), ("status", "200")),
    )
    assert scrape(first.test_client())[hello] == 1
    assert hello not in scrape(second.test_client())


def test_breaker_and_pool_gauges(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    app.extensions["resilience"].detail_providers["circuit_breakers"] = lambda: {
        "payments": {"state": "open"},
        "mail": "closed",
        "search": "HALF-OPEN",
        "odd": 3,
    }
    values = scrape(app.test_client())

    def states(name: str) -> dict[str, float]:
        return {
            dict(labels)["state"]: value
            for (metric, labels), value in values.items()
            if metric == "resilience_circuit_breaker_state" and dict(labels)["name"] == name
        }

    assert states("payments") == {
        "closed": 0,
        "open": 1,
        "half-open": 0,
        "forced-open": 0,
        "forced-closed": 0,
    }
    assert states("mail")["closed"] == 1 and sum(states("mail").values()) == 1
    assert states("search")["half-open"] == 1 and sum(states("search").values()) == 1
    assert states("odd") == {}
    assert _breaker_states(["not", "a", "mapping"]) == {}


def test_mark_process_dead_is_harmless_in_one_process() -> None:
    mark_process_dead(12345)


def test_request_statistics_over_windows() -> None:
    now = [1000.0]
    stats = RequestStats(clock=lambda: now[0])
    for number in range(100):
        stats.record(number / 1000, 500 if number < 10 else 200)
    window = stats.window(60)
    assert window["requests"] == 100
    assert window["error_rate"] == 10.0
    assert window["latency_p50"] == 0.049
    assert window["latency_p95"] == 0.094
    assert window["latency_p99"] == 0.098
    now[0] += 120
    stats.record(0.5, 200)
    assert stats.window(60)["requests"] == 1
    assert stats.window(300)["requests"] == 101
    now[0] += 1000
    empty = stats.window(60)
    assert (empty["requests"], empty["latency_p95"], empty["error_rate"]) == (0, None, 0.0)
    assert stats.snapshot()["total"] == 101


def test_multiprocess_mode_reads_the_shared_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values themselves go to files only when the variable is set before
    prometheus_client is imported (see test_health_gunicorn.py); here the
    exposition path and the dead-worker cleanup run against the folder."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    metrics = Metrics()
    assert metrics.multiprocess
    metrics.record_request("hello", "GET", 200, 0.01)
    assert b"resilience_http_requests_total" not in metrics.exposition()  # not in the files
    mark_process_dead(os.getpid())


def test_level_status_and_redis_checks() -> None:
    assert [level_status(v, 80, 0.1) for v in (10, 72, 80, 99)] == [
        "pass",
        "warn",
        "fail",
        "fail",
    ]
    # Only the monitor switch's Redis is a critical check; the rate limiter's storage
    # has its own, never critical: limits fail open.
    assert [(c.name, c.critical) for c in redis_checks("redis://b:6379/0", 1.0)] == [
        ("redis:responseTime", True)
    ]
    assert redis_checks(None, 1.0) == []


def test_open_circuit_breakers_show_in_detailed_health_and_metrics(tmp_path: Path) -> None:
    from flask_resilience import circuit_breaker

    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)

    @circuit_breaker("health-test-payments", fail_max=1, reset_timeout=60)
    def pay() -> None:
        raise ConnectionError("payments down")

    with app.app_context(), pytest.raises(ConnectionError):
        pay()
    client = app.test_client()
    detailed = client.get(
        "/health/detailed", headers={"Authorization": f"Bearer {TOKEN}"}
    ).get_json(force=True)
    assert detailed["circuit_breakers"]["health-test-payments"]["state"] == "open"
    assert "bulkheads" in detailed
    values = scrape(client)
    open_state = (("name", "health-test-payments"), ("state", "open"))
    assert values[("resilience_circuit_breaker_state", open_state)] == 1
    opened = (("name", "health-test-payments"), ("to", "open"))
    assert values[("resilience_circuit_breaker_transitions_total", opened)] == 1


def test_the_request_log_counts_later_and_drains_when_full() -> None:
    batches: list[list[tuple[float, float, int, str, str]]] = []
    log = RequestLog(batches.append, skip_prefix="health.", limit=3)
    log.add((1.0, 0.5, "200 OK", "hello", "GET"))
    log.add((2.0, 0.1, "503 SERVICE UNAVAILABLE", "health.ready", "GET"))
    assert batches == []  # nothing counted on the request's path
    log.add((3.0, 0.2, "404 NOT FOUND", None, "POST"))  # the third fills it: drained
    assert batches == [[(1.0, 0.5, 200, "hello", "GET"), (3.0, 0.2, 404, "<unmatched>", "POST")]]
    log.drain()
    assert len(batches) == 1  # an empty drain counts nothing


def test_a_batch_gives_the_histogram_of_single_observations() -> None:
    durations = [0.0001, 0.005, 0.0051, 0.3, 0.3, 2.5, 7.0, 11.0, 60.0]
    one_by_one, batched = Metrics(), Metrics()
    for seconds in durations:
        one_by_one.latency.labels("hello", "200").observe(seconds)
        one_by_one.requests.labels("hello", "GET", "200").inc()
    batched.record_many([(0.0, seconds, 200, "hello", "GET") for seconds in durations])
    expected = one_by_one.exposition().decode().splitlines()
    got = batched.exposition().decode().splitlines()
    keep = [line for line in expected if "_created" not in line and "errors" not in line]
    assert [line for line in got if "_created" not in line and "errors" not in line] == keep


def test_batched_statistics_skip_what_the_buckets_no_longer_hold() -> None:
    now = [1000.5]
    stats = RequestStats(clock=lambda: now[0])
    stats.record_many([(1000.2, 0.1, 500, "a", "GET"), (1000.3, 0.3, 200, "a", "GET")])
    stats.record_many([(1000.4 + 300, 0.1, 200, "a", "GET")])  # reuses the same bucket
    stats.record_many([(1000.4, 0.2, 200, "a", "GET")])  # too old for it now
    now[0] = 1300.5
    window = stats.window(60)
    assert window["requests"] == 1
    assert stats.total == 3
    assert stats.total_errors == 1
