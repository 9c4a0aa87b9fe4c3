"""Where live breakers are found: one per name and app, one per name for code outside apps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from werkzeug.exceptions import ServiceUnavailable

from ..config import DEFAULT_SETTINGS, Settings
from ..errors import ProblemError
from ..state import ResilienceState, find_state
from .breaker import Breaker, Policy
from .shared import RedisLink, SharedBreaker


@dataclass(frozen=True)
class Definition:
    """What ``circuit_breaker(name, ...)`` said of the breaker; ``None``: the app's setting."""

    name: str
    failure_rate_threshold: float | None
    minimum_calls: int
    window_size: int
    slow_call_duration: float | None
    slow_call_rate_threshold: float
    half_open_calls: int
    fail_max: int | None
    reset_timeout: float | None

    def policy(self, settings: Settings) -> Policy:
        return Policy(
            name=self.name,
            failure_rate_threshold=self.failure_rate_threshold,
            minimum_calls=self.minimum_calls,
            window_size=self.window_size,
            slow_call_duration=self.slow_call_duration,
            slow_call_rate_threshold=self.slow_call_rate_threshold,
            half_open_calls=self.half_open_calls,
            fail_max=settings.circuit_fail_max if self.fail_max is None else self.fail_max,
            reset_timeout=settings.circuit_reset_timeout
            if self.reset_timeout is None
            else self.reset_timeout,
        )


_definitions: dict[str, Definition] = {}
_registry_lock = threading.Lock()


def define(definition: Definition) -> None:
    """Record a breaker's definition; every use of a name must say the same."""
    with _registry_lock:
        known = _definitions.setdefault(definition.name, definition)
    if known != definition:
        raise ValueError(
            f"Circuit breaker {definition.name!r} is already defined with other settings"
            f" ({known}); give every use of a name the same settings, or another name."
        )


def defined_names() -> list[str]:
    with _registry_lock:
        return sorted(_definitions)


@dataclass
class Breakers:
    """The circuit part's state for one app: its live breakers, and its Redis link."""

    breakers: dict[str, Breaker] = field(default_factory=dict)
    link: RedisLink | None = None
    settings: Settings = DEFAULT_SETTINGS


_process = Breakers()
"""The breakers of code that runs outside any app (a job, a command)."""


def _current_breakers() -> Breakers:
    state = find_state()
    found = state.find(Breakers) if state is not None else None
    return found if found is not None else _process


def get_breaker(name: str) -> Breaker:
    """The live breaker called ``name``: the current app's, else this process's.

    :raises LookupError: no ``circuit_breaker`` was defined with that name.
    """
    part = _current_breakers()
    breaker = part.breakers.get(name)
    if breaker is None:
        breaker = _make(part, name)
    return breaker


def _make(part: Breakers, name: str) -> Breaker:
    with _registry_lock:
        definition = _definitions.get(name)
        if definition is None:
            raise LookupError(f"No circuit breaker is called {name!r}.")
        breaker = part.breakers.get(name)
        if breaker is None:
            policy = definition.policy(part.settings)
            if part.link is None:
                breaker = Breaker(policy)
            else:
                breaker = SharedBreaker(policy, part.link, part.settings.circuit_sync_interval)
            part.breakers[name] = breaker
    return breaker


def init_app(app: Flask, state: ResilienceState) -> None:
    """Keep the app's breakers; connect them to Redis when ``RESILIENCE_CIRCUIT_STORAGE_URI``
    is set.

    Nothing is sent to Redis here: an app must start while Redis is down.
    """
    uri = state.settings.circuit_storage_uri
    link = RedisLink(uri) if uri is not None else None
    state.add(Breakers(link=link, settings=state.settings))
    if link is not None:
        state.add_cleanup(link.client.close, name="circuit breaker Redis")
    # Read and changed in the app's context (detailed health, the monitor, the
    # command line, the health blueprint's operator endpoint).
    state.detail_providers["circuit_breakers"] = breaker_states
    state.controls["circuit_breakers"] = control


def breaker_states() -> dict[str, dict[str, Any]]:
    """Every defined breaker's state, window and settings, as the current app sees them."""
    return {name: get_breaker(name).snapshot() for name in defined_names()}


class BreakerNotShared(ProblemError, ServiceUnavailable):
    """An operator's change reached this process only: the shared storage did not answer."""

    kind = "breaker-change-not-shared"


ACTIONS: dict[str, Callable[[Breaker], None]] = {
    "open": Breaker.force_open,
    "close": Breaker.force_closed,
    "reset": Breaker.reset,
}
"""What an operator may do to a breaker, by the word the command line and the endpoint use."""


def control(name: str, action: str) -> dict[str, Any]:
    """Apply ``action`` (``open``, ``close`` or ``reset``) to the breaker ``name``.

    Answers the breaker's snapshot with its ``name``.

    :raises LookupError: no breaker has that name.
    :raises ValueError: not an action.
    :raises BreakerNotShared: Redis storage is configured but did not answer; the
        change holds in this process only.
    """
    if action not in ACTIONS:
        raise ValueError(f"{action!r} is not one of {', '.join(ACTIONS)}.")
    breaker = get_breaker(name)
    ACTIONS[action](breaker)
    snapshot = {"name": name, **breaker.snapshot()}
    if _current_breakers().link is not None and snapshot["storage"] != "redis":
        raise BreakerNotShared(
            f"Redis is unreachable: circuit breaker {name!r} is {snapshot['state']} in this"
            " process only. Try again once Redis answers."
        )
    return snapshot
