"""One thread per process that calls back at deadlines: the deadlines' alarm clock.

A statement still running at its request's deadline is cancelled from here, and a
request running in a thread of its own (gthread workers) is interrupted from
here: Python cannot stop another thread, but the thread that waits can. Arming
costs a lock and a heap push; the thread sleeps until the nearest deadline, and a
deadline that is disarmed in time costs nothing more.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable

from ..log import ExtensionLogger

logger = ExtensionLogger("deadlines")


class DeadlineWatch:
    """Calls each armed callback once, at its deadline, unless disarmed before."""

    def __init__(self) -> None:
        self._tokens = itertools.count(1)
        self._reset()
        # A forked worker starts with no thread and none of its parent's deadlines,
        # and with a lock no thread of the parent may hold.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._armed: dict[int, Callable[[], object]] = {}
        self._heap: list[tuple[float, int]] = []
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, callback: Callable[[], object]) -> int:
        """Call ``callback`` at ``deadline`` (a ``time.perf_counter()`` value); returns the
        token that disarms it."""
        token = next(self._tokens)
        with self._wake:
            self._ensure_thread()
            self._armed[token] = callback
            heapq.heappush(self._heap, (deadline, token))
            if self._heap[0][1] == token:  # sooner than what the thread waits for
                self._wake.notify()
        return token

    def disarm(self, token: int) -> None:
        # Only the callback goes: its heap entry is dropped when its time comes.
        self._armed.pop(token, None)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="resilience-deadlines", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, token = self._heap[0]
                wait = deadline - time.perf_counter()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._heap)
                callback = self._armed.pop(token, None)
            if callback is not None:
                try:
                    callback()
                except Exception:  # one failed cancel must not stop the clock
                    logger.exception("A deadline callback failed")


watch = DeadlineWatch()
"""The process's one watch."""
