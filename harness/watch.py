"""What the example app says while it is being broken, polled in the background.

A :class:`HealthWatch` asks ``/health/ready`` and ``/health/live`` every 0.2 s,
each path in its own thread so that a slow answer from one never delays the
other, and asks ``/api/documents`` as a logged-in user every 0.5 s to keep the
body of every error answer: the locust log keeps statuses, not bodies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import requests

from harness.probe import Prober
from harness.stack import Stack

HEALTH_PATHS = ("/health/ready", "/health/live")
HEALTH_INTERVAL = 0.2
ERROR_INTERVAL = 0.5
ERROR_PATH = "/api/documents"

POLL_TIMEOUT = 2.0
"""Seconds a poll waits for its answer, as the readiness probe of docs/health.md."""

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Sample:
    """One health poll: when it started (epoch seconds), what, and its status (0: none)."""

    start: float
    path: str
    status: int


@dataclass(frozen=True)
class ErrorAnswer:
    """An error answer to a logged-in user, and whether its body is what a client should see."""

    start: float
    status: int
    content_type: str
    traceback: bool

    @property
    def problem_json(self) -> bool:
        return self.content_type.startswith(PROBLEM_JSON)


def has_traceback(body: str) -> bool:
    return "Traceback (most recent call last)" in body or 'File "' in body


class HealthWatch:
    """Background polling of a stack for at most ``limit`` seconds, stopped on exit."""

    def __init__(self, stack: Stack, limit: float) -> None:
        self.stack = stack
        self.limit = limit
        self.samples: list[Sample] = []
        self.errors: list[ErrorAnswer] = []
        self.answers = 0
        self._user = Prober(stack)
        self._next_login = 0.0
        self._stop = threading.Event()
        actions: list[tuple[float, Callable[[], None]]] = [
            *((HEALTH_INTERVAL, self._poller(path)) for path in HEALTH_PATHS),
            (ERROR_INTERVAL, self._ask_as_user),
        ]
        self._threads = [
            threading.Thread(target=self._every, args=action, daemon=True) for action in actions
        ]

    def __enter__(self) -> HealthWatch:
        self._user.log_in()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(POLL_TIMEOUT + 1)

    def errors_between(self, start: float, end: float) -> list[ErrorAnswer]:
        return [e for e in self.errors if start <= e.start <= end]

    def _every(self, interval: float, action: Callable[[], None]) -> None:
        deadline = time.monotonic() + self.limit
        due = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            action()
            # After a slow answer, carry on from now rather than catching up in a burst.
            due = max(due + interval, time.monotonic())
            self._stop.wait(due - time.monotonic())

    def _poller(self, path: str) -> Callable[[], None]:
        url = self.stack.url + path

        def poll() -> None:
            started = time.time()
            try:
                status = requests.get(url, timeout=POLL_TIMEOUT).status_code
            except requests.RequestException:
                status = 0
            self.samples.append(Sample(started, path, status))

        return poll

    def _ask_as_user(self) -> None:
        self._user.new_address()
        started = time.time()
        try:
            answer = self._user.session.get(self.stack.url + ERROR_PATH, timeout=POLL_TIMEOUT)
        except requests.RequestException:
            return
        self.answers += 1
        if answer.status_code == 401 and time.monotonic() >= self._next_login:
            # Logged out by a restart of the session store, say: log in again, not too often.
            self._next_login = time.monotonic() + 2
            self._user.log_in()
        if answer.status_code >= 400:
            self.errors.append(
                ErrorAnswer(
                    started,
                    answer.status_code,
                    answer.headers.get("Content-Type", ""),
                    has_traceback(answer.text),
                )
            )
