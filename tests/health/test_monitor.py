"""The background monitor: levels with hysteresis, alerts, the thread and its switch."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_resilience import Resilience
from flask_resilience.health import Alert, Sample, alert_raised, health_state
from flask_resilience.health.monitor import FileSwitch, Monitor, RedisSwitch, Thresholds
from tests.health.apps import TOKEN, create_app, extension_of
from tests.support.servers import free_port, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMITS = {
    "cpu_usage": 80.0,
    "memory_usage": 85.0,
    "disk_usage": 90.0,
    "response_time": 5.0,
    "error_rate": 5.0,
    "db_connections": 80.0,
}


class Recorder:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def __call__(self, alert: Alert) -> None:
        self.alerts.append(alert)


def monitor(tmp_path: Path, **options: Any) -> tuple[Monitor, Recorder]:
    recorder = Recorder()
    defaults: dict[str, Any] = {
        "interval": 0.05,
        "history": 50,
        "thresholds": Thresholds(LIMITS, margin=0.1, hysteresis=0.05),
        "collect": lambda: Sample(time=time.time()),
        "on_alert": recorder,
        "switch": FileSwitch(tmp_path / "switch.json", True),
    }
    defaults.update(options)
    return Monitor(**defaults), recorder


def feed(target: Monitor, metric: str, *values: float) -> list[str]:
    levels = []
    for value in values:
        reading: dict[str, Any] = {metric: value}  # one of Sample's fields, by name
        target.observe(Sample(time=time.time(), **reading))
        levels.append(target.levels[metric])
    return levels


def test_levels_follow_thresholds_with_a_warning_margin(tmp_path: Path) -> None:
    target, recorder = monitor(tmp_path)
    assert feed(target, "cpu_usage", 50, 72, 85, 50) == [
        "healthy",
        "warning",
        "critical",
        "healthy",
    ]
    assert [(a.previous, a.level) for a in recorder.alerts] == [
        ("healthy", "warning"),
        ("warning", "critical"),
        ("critical", "healthy"),
    ]
    alert = recorder.alerts[1]
    assert (alert.metric, alert.value, alert.threshold) == ("cpu_usage", 85, 80.0)
    assert target.level == "healthy"


def test_a_value_hovering_at_a_threshold_does_not_flap(tmp_path: Path) -> None:
    target, recorder = monitor(tmp_path)
    hovering = [80.1, 79.8, 80.3, 79.2, 80.0, 77.0, 79.9, 76.5]
    assert set(feed(target, "cpu_usage", *hovering)) == {"critical"}
    assert len(recorder.alerts) == 1
    # Only clearly below (threshold less 5 % of it) does the level drop.
    assert feed(target, "cpu_usage", 75.9) == ["warning"]
    assert feed(target, "cpu_usage", 71.0, 70.0, 72.5) == ["warning"] * 3
    assert feed(target, "cpu_usage", 67.9) == ["healthy"]
    assert len(recorder.alerts) == 3


def test_every_metric_has_its_threshold(tmp_path: Path) -> None:
    target, recorder = monitor(tmp_path)
    target.observe(
        Sample(
            time=1.0,
            memory_usage=90,
            disk_usage=95,
            response_time=6.0,
            error_rate=10,
            db_connections=81,
        )
    )
    assert {a.metric for a in recorder.alerts} == set(LIMITS) - {"cpu_usage"}
    assert target.levels["cpu_usage"] == "healthy"
    assert target.level == "critical"
    assert {a["metric"] for a in target.active_alerts()} == set(LIMITS) - {"cpu_usage"}


def test_alert_callbacks_and_signal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    resilience = extension_of(app)
    received: list[Alert] = []
    signalled: list[tuple[Any, Alert]] = []

    @resilience.on_alert
    def broken(alert: Alert) -> None:
        raise RuntimeError("callback bug")

    resilience.on_alert(received.append)

    def receiver(sender: Any, alert: Alert) -> None:
        signalled.append((sender, alert))

    alert_raised.connect(receiver, app)
    try:
        with app.app_context():
            target = resilience.monitor
        with caplog.at_level(logging.ERROR):
            target.observe(Sample(time=1.0, error_rate=50.0))
            target.observe(Sample(time=2.0, error_rate=0.0))
    finally:
        alert_raised.disconnect(receiver, app)
    assert [(a.metric, a.level, a.value, a.threshold) for a in received] == [
        ("error_rate", "critical", 50.0, 5.0),
        ("error_rate", "healthy", 0.0, 5.0),
    ]
    assert [(sender, alert.level) for sender, alert in signalled] == [
        (app, "critical"),
        (app, "healthy"),
    ]
    raised = [r for r in caplog.records if r.getMessage().startswith("Alert callback")]
    assert len(raised) == 2


def test_a_raising_signal_receiver_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)

    def receiver(sender: Any, alert: Alert) -> None:
        raise RuntimeError("receiver bug")

    alert_raised.connect(receiver, app)
    try:
        with app.app_context(), caplog.at_level(logging.ERROR):
            extension_of(app).monitor.observe(Sample(time=1.0, cpu_usage=99))
    finally:
        alert_raised.disconnect(receiver, app)
    assert "receiver bug" in caplog.text


def test_the_monitor_survives_failing_samples(tmp_path: Path) -> None:
    calls = []

    def collect() -> Sample:
        calls.append(1)
        if len(calls) % 2:
            raise OSError("psutil hiccup")
        return Sample(time=time.time(), cpu_usage=10)

    target, _ = monitor(tmp_path, collect=collect)
    target.start()
    try:
        assert wait_until(lambda: len(target.history) >= 3, 5)
        assert target.errors >= 3
        assert target.running
    finally:
        target.stop()


def test_stop_joins_in_time_and_start_stop_start_works(tmp_path: Path) -> None:
    target, _ = monitor(tmp_path, interval=0.5)
    for _ in range(2):
        target.start()
        thread = target._thread
        target.start()  # idempotent
        assert target.state == "running"
        assert thread is not None and thread.is_alive() and target._thread is thread
        started = time.perf_counter()
        target.stop()
        assert time.perf_counter() - started < 0.5 + 1.0
        assert target.state == "stopped"
        assert not thread.is_alive()
    target.stop()  # stopping a stopped monitor is harmless


def test_a_forked_worker_starts_its_own_monitor_afresh(tmp_path: Path) -> None:
    target, _ = monitor(tmp_path, interval=0.5)
    target.observe(Sample(time=1, cpu_usage=99))
    target._owner_pid = -1  # as seen by a child forked after the parent had started it
    target.ensure_started()
    try:
        assert target.running
        assert (len(target.history), len(target.alerts), target.level) == (0, 0, "healthy")
        thread = target._thread
        target.ensure_started()  # once per process
        assert thread is not None and thread.is_alive() and target._thread is thread
    finally:
        target.stop()


def test_history_is_a_ring_buffer(tmp_path: Path) -> None:
    target, _ = monitor(tmp_path, history=5)
    for second in range(12):
        target.observe(Sample(time=float(second)))
    assert [s.time for s in target.history] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert len(target.snapshot(history=2)["history"]) == 2
    assert target.snapshot(history=0)["history"] == []


def test_steady_rss_growth_is_a_suspected_leak(tmp_path: Path) -> None:
    target, _ = monitor(tmp_path, leak_samples=10)
    for step in range(10):
        target.observe(Sample(time=step, rss_bytes=100_000_000 + step * 1_000_000))
    report = target.leak_report()
    assert report["suspected"] is True
    assert report["rss_growth_bytes"] == 9_000_000

    flat, _ = monitor(tmp_path, leak_samples=10)
    for step in range(10):
        flat.observe(Sample(time=step, rss_bytes=100_000_000 + (step % 2) * 1_000_000))
    assert flat.leak_report()["suspected"] is False
    short, _ = monitor(tmp_path, leak_samples=10)
    short.observe(Sample(time=0, rss_bytes=1))
    assert short.leak_report()["suspected"] is False


def test_gc_runs_when_memory_turns_critical(tmp_path: Path) -> None:
    collections = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            collections.append(1)

    gc.callbacks.append(on_gc)
    try:
        target, _ = monitor(tmp_path, gc_on_critical=True)
        target.observe(Sample(time=1, memory_usage=70))
        before = len(collections)
        target.observe(Sample(time=2, memory_usage=95))
        assert len(collections) == before + 1
        quiet, _ = monitor(tmp_path, gc_on_critical=False)
        quiet.observe(Sample(time=2, memory_usage=95))
        assert len(collections) == before + 1
    finally:
        gc.callbacks.remove(on_gc)


def test_the_thread_starts_with_the_first_request_only(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_INTERVAL=0.05)
    with app.app_context():
        target = extension_of(app).monitor
    # This app's own thread, not a count of every monitor thread: other tests'
    # monitors end on their own schedule while this one runs.
    assert target._thread is None  # not at init, not at import
    client = app.test_client()
    client.get("/")
    first = target._thread
    client.get("/health/live")
    assert first is not None and first.is_alive()
    assert target._thread is first  # the second request started no other
    try:
        assert wait_until(lambda: len(target.history) >= 2, 5)
        sample = target.history[-1]
        assert sample.cpu_usage is not None
        assert sample.memory_usage is not None
        assert sample.rss_bytes
        assert sample.response_time is not None
    finally:
        target.stop()


def test_the_http_switch_reaches_other_workers(tmp_path: Path) -> None:
    """Two apps on one instance folder stand for two workers of one instance."""
    first = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_INTERVAL=0.05)
    second = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_INTERVAL=0.05)
    monitors = []
    for app in (first, second):
        app.test_client().get("/")
        with app.app_context():
            monitors.append(extension_of(app).monitor)
    try:
        assert all(m.state == "running" for m in monitors)
        response = first.test_client().post("/health/monitoring/stop", headers=AUTH)
        assert json.loads(response.data)["monitoring"] == "stopped"
        assert monitors[0].state == "stopped"
        assert wait_until(lambda: monitors[1].state == "stopped", 0.05 + 0.5)
        samples = len(monitors[1].history)
        time.sleep(0.2)
        assert len(monitors[1].history) == samples  # no sampling while stopped

        again = first.test_client().post("/health/monitoring/stop", headers=AUTH)
        assert json.loads(again.data)["monitoring"] == "stopped"
        response = second.test_client().post("/health/monitoring/start", headers=AUTH)
        assert json.loads(response.data)["monitoring"] == "running"
        assert wait_until(lambda: monitors[0].state == "running", 0.05 + 0.5)
    finally:
        for target in monitors:
            target.stop()


def test_disabled_monitor_starts_stopped_and_can_be_started(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    client = app.test_client()
    client.get("/")
    with app.app_context():
        target = extension_of(app).monitor
    try:
        assert target.state == "stopped"
        response = client.post("/health/monitoring/start", headers=AUTH)
        assert json.loads(response.data)["monitoring"] == "running"
        assert target.state == "running"
    finally:
        target.stop()


def test_a_broken_switch_file_means_the_configured_default(tmp_path: Path) -> None:
    switch = FileSwitch(tmp_path / "nested" / "switch.json", True)
    assert switch.read() is True
    switch.write(False)
    assert switch.read() is False
    switch.path.write_text("not json")
    assert switch.read() is True
    switch.path.write_text('{"enabled": "yes"}')
    assert switch.read() is True


# -- Redis ---------------------------------------------------------------------------


def test_the_switch_can_live_in_redis(tmp_path: Path, redis_url: str) -> None:
    apps = [
        create_app(
            instance_path=str(tmp_path / name),
            RESILIENCE_MONITOR_REDIS_URL=redis_url,
            RESILIENCE_MONITOR_INTERVAL=0.05,
        )
        for name in ("a", "b")
    ]
    monitors = []
    for app in apps:
        app.test_client().get("/")
        with app.app_context():
            monitors.append(extension_of(app).monitor)
    try:
        apps[0].test_client().post("/health/monitoring/stop", headers=AUTH)
        assert wait_until(lambda: monitors[1].state == "stopped", 0.5)
        ready = json.loads(apps[0].test_client().get("/health/ready").data)
        assert ready["checks"]["redis:responseTime"][0]["status"] == "pass"
    finally:
        for target in monitors:
            target.stop()


def test_redis_down_keeps_the_last_switch_state(caplog: pytest.LogCaptureFixture) -> None:
    switch = RedisSwitch(f"redis://127.0.0.1:{free_port()}/0", True)
    with caplog.at_level(logging.WARNING):
        assert switch.read() is True
    assert "Redis failed" in caplog.text


def test_requests_never_move_the_monitors_cpu_baseline(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_INTERVAL=0.1)
    client = app.test_client()
    client.get("/")
    health = health_state(app)
    assert wait_until(lambda: bool(health.last_sample), 5)
    health.monitor.stop()
    # Fresh for the requests below however slowly they come (fresh is 2 intervals).
    health.last_sample[0] = dataclasses.replace(health.last_sample[0], time=time.time() + 60)
    baseline = health.cpu._last_system
    data = json.loads(client.get("/health/detailed", headers=AUTH).data)
    client.get("/health/metrics", headers=AUTH)
    assert health.cpu._last_system == baseline
    assert data["system"]["cpu_percent"] == health.last_sample[0].cpu_usage
    health.last_sample[0] = Sample(time=0.0)  # stale: requests read their own meter
    data = json.loads(client.get("/health/detailed", headers=AUTH).data)
    assert isinstance(data["system"]["cpu_percent"], float)
    assert health.cpu._last_system == baseline


def test_an_app_nobody_holds_takes_its_monitor_thread_with_it(tmp_path: Path) -> None:
    app = Flask("throwaway", instance_path=str(tmp_path))
    app.config["RESILIENCE_MONITOR_INTERVAL"] = 0.05
    Resilience(app)
    app.test_client().get("/")
    thread = health_state(app).monitor._thread
    assert thread is not None
    assert thread.is_alive()
    del app
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_requests_of_an_app_in_testing_mode_start_no_monitor(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), TESTING=True)
    client = app.test_client()
    client.get("/")
    with app.app_context():
        target = extension_of(app).monitor
    assert target._thread is None
    response = client.post("/health/monitoring/start", headers=AUTH)
    assert json.loads(response.data)["monitoring"] == "running"
