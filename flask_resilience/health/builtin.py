"""The checks every app gets: its databases, its Redis, its disks and its memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import Flask

from ..state import HealthCheck
from .checks import HealthResult
from .system import disk_usage, memory_usage

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy


def level_status(value: float, limit: float, margin: float) -> str:
    if value >= limit:
        return "fail"
    return "warn" if value >= limit * (1 - margin) else "pass"


def database_checks(app: Flask, db: SQLAlchemy | None) -> list[HealthCheck]:
    """``SELECT 1`` through the pool of each bind, critical; ``componentId`` is the bind's
    name (``default`` for the default bind, as in the pools of detailed health)."""
    if db is None:
        return []
    binds: list[str | None] = []
    if app.config.get("SQLALCHEMY_DATABASE_URI") or "url" in app.config.get(
        "SQLALCHEMY_ENGINE_OPTIONS", {}
    ):
        binds.append(None)
    binds.extend(app.config.get("SQLALCHEMY_BINDS", {}))
    checks = []
    for bind in binds:
        name = "database:responseTime" if bind is None else f"database.{bind}:responseTime"
        checks.append(
            HealthCheck(
                name,
                _select_one(db, bind),
                critical=True,
                component_type="datastore",
                component_id=bind or "default",
            )
        )
    return checks


def _select_one(db: SQLAlchemy, bind: str | None) -> Callable[[], HealthResult]:
    def check() -> HealthResult:
        started = time.perf_counter()
        with db.engines[bind].connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return HealthResult("pass", round((time.perf_counter() - started) * 1000, 3), "ms")

    return check


def redis_checks(monitor_url: str | None, timeout: float) -> list[HealthCheck]:
    """``PING`` the monitor switch's Redis, critical.

    The rate limiter's storage has a check of its own, never critical: limits fail
    open, so a Redis that is down must not take the app out of the load balancer.
    """
    if not monitor_url:
        return []
    return [
        HealthCheck(
            "redis:responseTime",
            _ping(monitor_url, timeout),
            critical=True,
            component_type="datastore",
            component_id="monitor",
        )
    ]


def _ping(url: str, timeout: float) -> Callable[[], HealthResult]:
    clients: list[Any] = []

    def check() -> HealthResult:
        if not clients:
            import redis

            clients.append(
                redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            )
        started = time.perf_counter()
        clients[0].ping()
        return HealthResult("pass", round((time.perf_counter() - started) * 1000, 3), "ms")

    return check


def disk_checks(app: Flask, limit: float, margin: float) -> list[HealthCheck]:
    """Space used on the disks of the instance folder and the upload folder
    (``componentId`` ``instance`` and ``uploads``: the folders' paths stay private)."""
    folders = {("disk:utilization", "instance"): app.instance_path}
    uploads = app.config.get("UPLOAD_FOLDER")
    if isinstance(uploads, str) and uploads:
        folders["disk.uploads:utilization", "uploads"] = uploads

    def check_for(folder: str) -> Callable[[], HealthResult]:
        def check() -> HealthResult:
            percent = disk_usage(folder)["percent"]
            return HealthResult(level_status(percent, limit, margin), percent, "percent")

        return check

    return [
        HealthCheck(name, check_for(folder), component_type="system", component_id=folder_id)
        for (name, folder_id), folder in folders.items()
    ]


def memory_check(limit: float, margin: float) -> HealthCheck:
    """Memory in use, of the container's limit when there is one."""

    def check() -> HealthResult:
        percent = memory_usage()["percent"]
        return HealthResult(level_status(percent, limit, margin), percent, "percent")

    return HealthCheck("memory:utilization", check, component_type="system")
