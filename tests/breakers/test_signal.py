"""``flask_resilience.signals.breaker_state_changed``: once per transition."""

from __future__ import annotations

import ast
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import flask_resilience.signals
from flask_resilience import CircuitOpen, Resilience, circuit_breaker
from flask_resilience.circuit import get_breaker
from flask_resilience.signals import breaker_state_changed

from .circuit_helpers import Dependency, app_with, breaker_name

Transition = tuple[object, str, str, str]


@pytest.fixture
def transitions() -> Iterator[list[Transition]]:
    """Every ``(sender, name, old, new)`` sent while the test runs."""
    seen: list[Transition] = []

    def receive(sender: object, *, name: str, old: str, new: str, **extra: Any) -> None:
        seen.append((sender, name, old, new))

    breaker_state_changed.connect(receive)
    try:
        yield seen
    finally:
        breaker_state_changed.disconnect(receive)


def of(name: str, seen: list[Transition]) -> list[tuple[object, str, str]]:
    return [(sender, old, new) for sender, breaker, old, new in seen if breaker == name]


def test_each_transition_of_a_cycle_is_sent_once(transitions: list[Transition]) -> None:
    name = breaker_name("cycle")
    dependency = Dependency(failing=True)
    guarded = circuit_breaker(name, fail_max=2, reset_timeout=0.1, half_open_calls=2)(dependency)

    for _ in range(2):
        with pytest.raises(ConnectionError):
            guarded()
    for _ in range(3):  # refusals change nothing
        with pytest.raises(CircuitOpen):
            guarded()
    time.sleep(0.15)
    with pytest.raises(ConnectionError):
        guarded()  # the first trial fails
    time.sleep(0.15)
    dependency.failing = False
    for _ in range(4):
        assert guarded() == "ok"

    assert of(name, transitions) == [
        (None, "closed", "open"),
        (None, "open", "half-open"),
        (None, "half-open", "open"),
        (None, "open", "half-open"),
        (None, "half-open", "closed"),
    ]


def test_the_sender_is_the_app_and_operators_changes_are_sent(
    transitions: list[Transition],
) -> None:
    app = app_with()
    name = breaker_name("operated")
    guarded = circuit_breaker(name)(Dependency())
    resilience = Resilience()
    with app.app_context():
        assert guarded() == "ok"
        breaker = resilience.breaker(name)
        breaker.force_open()
        breaker.force_open()  # already so: no transition
        breaker.force_closed()
        breaker.reset()
        breaker.reset()
    assert of(name, transitions) == [
        (app, "closed", "forced-open"),
        (app, "forced-open", "forced-closed"),
        (app, "forced-closed", "closed"),
    ]
    assert Resilience.breaker_state_changed is breaker_state_changed


def test_a_receiver_that_raises_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(sender: object, **extra: Any) -> None:
        raise RuntimeError("receiver bug")

    breaker_state_changed.connect(broken)
    try:
        name = breaker_name("broken-receiver")
        guarded = circuit_breaker(name, fail_max=1)(Dependency(failing=True))
        with pytest.raises(ConnectionError):  # the call's own error, not the receiver's
            guarded()
    finally:
        breaker_state_changed.disconnect(broken)
    assert get_breaker(name).state == "open"
    assert "breaker_state_changed receiver failed" in caplog.text


@pytest.mark.redis
def test_with_redis_only_the_app_that_made_a_transition_sends_it(
    redis_url: str, shared_app: Callable[..., Flask], transitions: list[Transition]
) -> None:
    # Each app reads the shared state on every call.
    first, second = (shared_app(redis_url, RESILIENCE_CIRCUIT_SYNC_INTERVAL=0) for _ in "ab")
    name = breaker_name("shared-signal")
    dependency = Dependency(failing=True)
    guarded = circuit_breaker(name, fail_max=1, reset_timeout=60)(dependency)
    with second.app_context():
        assert get_breaker(name).state == "closed"
    with first.app_context(), pytest.raises(ConnectionError):
        guarded()
    with second.app_context():
        with pytest.raises(CircuitOpen):
            guarded()
        assert get_breaker(name).state == "open"
        get_breaker(name).reset()
    with first.app_context():
        assert get_breaker(name).state == "closed"
    assert of(name, transitions) == [(first, "closed", "open"), (second, "open", "closed")]


def test_the_signals_module_imports_nothing_of_the_package() -> None:
    tree = ast.parse(Path(flask_resilience.signals.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no import from the package"
            imported.add(node.module or "")
    assert imported == {"__future__", "blinker", "flask", "typing"}
