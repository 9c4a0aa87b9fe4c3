"""``flask resilience breakers``: list them; open, close or reset one through Redis."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask import Flask

from flask_resilience import CircuitOpen, circuit_breaker
from flask_resilience.circuit import get_breaker
from flask_resilience.cli import resilience_group

from .circuit_helpers import Dependency, app_with, breaker_name


def state_in(app: Flask, name: str) -> str:
    with app.app_context():
        return get_breaker(name).state


@pytest.mark.redis
def test_open_close_and_reset_reach_every_app_sharing_the_redis(
    redis_url: str, shared_app: Callable[..., Flask]
) -> None:
    name = breaker_name("cli-payments")
    guarded = circuit_breaker(name)(Dependency())
    command_line, server = shared_app(redis_url), shared_app(redis_url)
    runner = command_line.test_cli_runner()

    result = runner.invoke(resilience_group, ["breakers", "open", name])
    assert result.exit_code == 0, result.output
    assert f"{name}: forced-open for every worker and instance." in result.output
    assert state_in(server, name) == "forced-open"
    with server.app_context(), pytest.raises(CircuitOpen):
        guarded()

    listing = runner.invoke(resilience_group, ["breakers"])
    assert listing.exit_code == 0, listing.output
    line = next(line for line in listing.output.splitlines() if line.startswith(name))
    assert line.split()[1:3] == ["forced-open", "redis"]

    assert runner.invoke(resilience_group, ["breakers", "close", name]).exit_code == 0
    assert state_in(server, name) == "forced-closed"
    assert runner.invoke(resilience_group, ["breakers", "reset", name]).exit_code == 0
    assert state_in(server, name) == "closed"
    with server.app_context():
        assert guarded() == "ok"


@pytest.mark.redis
def test_the_listing_as_json_holds_every_breaker(
    redis_url: str, shared_app: Callable[..., Flask]
) -> None:
    name = breaker_name("cli-json")
    circuit_breaker(name, window_size=30)
    result = (
        shared_app(redis_url).test_cli_runner().invoke(resilience_group, ["breakers", "--json"])
    )
    assert result.exit_code == 0, result.output
    entry = json.loads(result.output)[name]
    assert (entry["state"], entry["storage"], entry["window_size"]) == ("closed", "redis", 30)


@pytest.mark.redis
def test_an_unknown_name_is_refused_with_the_known_ones(
    redis_url: str, shared_app: Callable[..., Flask]
) -> None:
    known = breaker_name("cli-known")
    circuit_breaker(known)
    result = (
        shared_app(redis_url)
        .test_cli_runner()
        .invoke(resilience_group, ["breakers", "open", "cli-typo"])
    )
    assert result.exit_code == 1
    assert "No circuit breaker is called 'cli-typo'" in result.output
    assert known in result.output


def test_with_memory_storage_changing_a_breaker_is_refused() -> None:
    name = breaker_name("cli-memory")
    circuit_breaker(name)
    app = app_with()
    runner = app.test_cli_runner()
    result = runner.invoke(resilience_group, ["breakers", "open", name])
    assert result.exit_code == 1
    assert "RESILIENCE_CIRCUIT_STORAGE_URI is not set" in result.output
    assert f"POST <health prefix>/breakers/{name}/open" in result.output
    assert state_in(app, name) == "closed"
    listing = runner.invoke(resilience_group, ["breakers"])
    assert listing.exit_code == 0
    assert "this command's own breakers" in listing.output


def test_an_unreachable_redis_fails_the_command_and_says_so(
    shared_app: Callable[..., Flask],
) -> None:
    name = breaker_name("cli-unreachable")
    circuit_breaker(name)
    app = shared_app("redis://127.0.0.1:1/0")  # nothing listens on port 1
    result = app.test_cli_runner().invoke(resilience_group, ["breakers", "open", name])
    assert result.exit_code == 1
    assert f"circuit breaker {name!r} is forced-open in this process only" in result.output
