"""Graceful shutdown: draining, in-flight requests, cleanups and a forced deadline.

Shutting an app down, whoever asks (SIGTERM, gunicorn's ``worker_exit`` hook,
``Resilience.shutdown()``, the interpreter exiting), goes the same way:

1. ``state.draining`` is set at once, so readiness answers 503 and the load
   balancer stops sending traffic;
2. requests already in flight finish (counted by a WSGI middleware);
3. the cleanups run, newest first (the extension's own after the app's), each in
   its own thread bounded by its own timeout, an exception in one never skipping
   the others;
4. ``RESILIENCE_SHUTDOWN_TIMEOUT`` bounds the whole: waiting for requests may use
   what the cleanups do not need, and a cleanup that hangs is left behind.

Cleanups run once per process even when several apps share them.

SIGTERM is handled here only when nobody else does: in the main thread, outside
gunicorn (which handles it and calls the hooks of ``flask_resilience.gunicorn``),
and only while the signal still has its default action. The app keeps serving
while it drains, with readiness at 503, then the process exits with status 0.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING

from flask import Flask, has_request_context

from . import server
from .log import ExtensionLogger
from .state import DEFAULT_CLEANUP_TIMEOUT, OwnCleanup, ResilienceState, get_state

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask_sqlalchemy import SQLAlchemy


logger = ExtensionLogger("lifecycle")

_POLL_INTERVAL = 0.02
_EXIT_GRACE = 5.0
"""Seconds the main thread gets to exit after the shutdown before the process is ended."""

_order = itertools.count()
_OWN_FIRST = 10**15
"""Taken off the order of the extension's own cleanups, so that they run last."""
_claim_lock = threading.Lock()


@dataclass(eq=False)
class Cleanup:
    """A function to call once at shutdown, within ``timeout`` seconds."""

    function: Callable[[], object]
    timeout: float
    name: str
    order: int = field(default_factory=lambda: next(_order))
    claimed: bool = False

    def claim(self) -> bool:
        """True for the one caller that gets to run it."""
        with _claim_lock:
            if self.claimed:
                return False
            self.claimed = True
            return True


class Lifecycle:
    """The shutdown of one app.

    :param draining: the app's ``state.draining`` event, which readiness honours.
    :param shared: cleanups registered on the extension, shared by its apps.
    :param own: the app's ``state.own_cleanups``, read at shutdown: parts set up
        after this one add theirs too.
    :param timeout: ``RESILIENCE_SHUTDOWN_TIMEOUT``.
    :param log: the app's logger: a shutdown runs outside any app context.
    """

    def __init__(
        self,
        draining: threading.Event,
        shared: list[Cleanup],
        timeout: float,
        log: ExtensionLogger = logger,
        own: list[OwnCleanup] | None = None,
    ) -> None:
        self.draining = draining
        self._own = own if own is not None else []
        self._adopted = 0
        # Reentrant: a SIGTERM handler may read the cleanups while the thread it
        # interrupted is reading them.
        self._adopting = threading.RLock()
        self.timeout = timeout
        self.log = log
        self.cleanups: list[Cleanup] = []
        self._shared = shared
        self._lock = threading.Lock()
        # One token per request being served: set.add and set.discard are atomic,
        # which costs a request a fraction of what a lock would.
        self._active: set[object] = set()
        self._started = False
        self.finished = threading.Event()

    @property
    def in_flight(self) -> int:
        """Requests being served right now."""
        return len(self._active)

    def add_cleanup(
        self, function: Callable[[], object], *, timeout: float = DEFAULT_CLEANUP_TIMEOUT, name: str
    ) -> None:
        """A cleanup of the extension's own resources (an engine pool, a Redis client).

        These run after every cleanup registered with ``register_cleanup``, which
        may still need them, even ones registered before the app was initialised.
        """
        self.cleanups.append(Cleanup(function, timeout, name, order=next(_order) - _OWN_FIRST))

    def track_requests(self, wsgi_app: WSGIApplication) -> WSGIApplication:
        """Wrap ``wsgi_app`` to count the requests in flight."""
        active = self._active

        def counting(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            token = object()
            active.add(token)
            try:
                return wsgi_app(environ, start_response)
            finally:
                active.discard(token)

        return counting

    def shutdown(self, deadline: float | None = None) -> None:
        """Drain, wait for the requests in flight, run the cleanups; once.

        A second call returns at once. Called from within a request, that request
        is not waited for.

        :param deadline: a ``time.monotonic()`` value that bounds the whole;
            ``RESILIENCE_SHUTDOWN_TIMEOUT`` from now by default.
        """
        self.draining.set()
        with self._lock:
            if self._started:
                return
            self._started = True
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        pending = self._pending()
        reserve = self.cleanup_reserve()
        if not self._wait_for_requests(deadline - reserve, 1 if has_request_context() else 0):
            self.log.warning(
                "Shutting down with %d requests still in flight after the drain deadline",
                len(self._active),
            )
        for cleanup in pending:
            if cleanup.claim():
                _run_bounded(cleanup, deadline, self.log)
        self.finished.set()

    def _pending(self) -> list[Cleanup]:
        with self._adopting:
            while self._adopted < len(self._own):
                own = self._own[self._adopted]
                self._adopted += 1
                self.add_cleanup(own.function, timeout=own.timeout, name=own.name)
        return sorted(
            (cleanup for cleanup in [*self.cleanups, *self._shared] if not cleanup.claimed),
            key=lambda cleanup: cleanup.order,
            reverse=True,
        )

    def cleanup_reserve(self) -> float:
        """Seconds kept for the cleanups at the end: their bounds, up to half the timeout."""
        return min(sum(cleanup.timeout for cleanup in self._pending()), self.timeout / 2)

    def _wait_for_requests(self, until: float, allowed: int) -> bool:
        while len(self._active) > allowed:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(remaining, _POLL_INTERVAL))
        return True


def init_app(app: Flask, state: ResilienceState, shared: list[Cleanup]) -> None:
    """Count the app's requests in flight and include it in the process's shutdown.

    :param shared: the cleanups registered on the extension, shared by its apps.
    """
    settings = state.settings
    lifecycle = state.add(
        Lifecycle(
            state.draining,
            shared,
            settings.shutdown_timeout,
            logger.bound_to(app),
            own=state.own_cleanups,
        )
    )
    state.path.add_layer("in_flight", lifecycle.track_requests)
    if state.db is not None:
        state.add_cleanup(partial(_dispose_engines, app, state.db), name="database pools")
    # A test suite's process is not a server: SIGTERM must end it the way it always did.
    register(lifecycle, handle_sigterm=settings.handle_sigterm and not app.testing)


def lifecycle_of(app: Flask | None = None) -> Lifecycle:
    return get_state(app).get(Lifecycle)


def _dispose_engines(app: Flask, db: SQLAlchemy) -> None:
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def _run_bounded(cleanup: Cleanup, deadline: float, log: ExtensionLogger) -> None:
    budget = min(cleanup.timeout, deadline - time.monotonic())
    if budget <= 0:
        log.error("Cleanup %s skipped: the shutdown deadline has passed", cleanup.name)
        return
    worker = threading.Thread(
        target=_call, args=(cleanup, log), name=f"cleanup {cleanup.name}", daemon=True
    )
    worker.start()
    worker.join(budget)
    if worker.is_alive():
        log.error("Cleanup %s did not finish within %.1f s; left behind", cleanup.name, budget)


def _call(cleanup: Cleanup, log: ExtensionLogger) -> None:
    try:
        cleanup.function()
    except Exception:
        log.exception("Cleanup %s failed", cleanup.name)
    else:
        log.debug("Cleanup %s done", cleanup.name)


def cleanup_name(function: Callable[..., object]) -> str:
    module = getattr(function, "__module__", None) or ""
    name = getattr(function, "__qualname__", None) or repr(function)
    return f"{module}.{name}" if module else name


# --- Every app of the process -------------------------------------------------------

_lifecycles: weakref.WeakSet[Lifecycle] = weakref.WeakSet()
_process_lock = threading.Lock()
_hooks_installed = False
_shutdown_thread: threading.Thread | None = None
_shutdown_done = threading.Event()
_drain_started: float | None = None


def register(lifecycle: Lifecycle, *, handle_sigterm: bool = True) -> None:
    """Include ``lifecycle`` in the process's shutdown; handle SIGTERM if nobody does."""
    global _hooks_installed
    _lifecycles.add(lifecycle)
    with _process_lock:
        if not _hooks_installed:
            _hooks_installed = True
            atexit.register(shutdown_all)
    if handle_sigterm:
        install_sigterm_handler()


def install_sigterm_handler() -> bool:
    """Handle SIGTERM with a graceful shutdown, if that is this process's job.

    :return: whether the handler is installed.
    """
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        return True
    if threading.current_thread() is not threading.main_thread() or server.under_gunicorn():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False  # the server, or the app, handles it
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def begin_draining() -> None:
    """Turn readiness to 503 in every app of the process, at once.

    The shutdown's deadline counts from the first call.
    """
    global _drain_started
    if _drain_started is None:
        _drain_started = time.monotonic()
    for lifecycle in list(_lifecycles):
        lifecycle.draining.set()


def shutdown_all() -> None:
    """Shut every app of the process down, within the longest of their deadlines."""
    begin_draining()
    deadline = _deadline()
    for lifecycle in list(_lifecycles):
        lifecycle.shutdown(deadline)


def _deadline() -> float:
    timeouts = [lifecycle.timeout for lifecycle in list(_lifecycles)]
    return (_drain_started or time.monotonic()) + max(timeouts, default=0)


def enforce_deadline() -> None:
    """Bound a shutdown that the server drains on its own (gunicorn) by the deadline.

    gunicorn waits ``graceful_timeout`` for its requests before ``worker_exit``
    runs the cleanups. If requests are still in flight when only the cleanups'
    time is left, the cleanups run anyway and the process ends:
    ``RESILIENCE_SHUTDOWN_TIMEOUT`` bounds the drain and the cleanups together.
    """
    begin_draining()
    reserve = max((lifecycle.cleanup_reserve() for lifecycle in list(_lifecycles)), default=0)
    remaining = max(0.0, _deadline() - reserve - time.monotonic())
    watchdog = threading.Timer(remaining, _clean_up_and_exit)
    watchdog.name = "flask-resilience deadline"
    watchdog.daemon = True
    watchdog.start()


# Ends in os._exit, before coverage can record it; the gunicorn deadline test runs it.
def _clean_up_and_exit() -> None:  # pragma: no cover
    logger.error("Requests still in flight at the shutdown deadline; cleaning up and exiting")
    shutdown_all()  # returns at once if worker_exit is running it: wait for that one
    deadline = _deadline()
    for lifecycle in list(_lifecycles):
        lifecycle.finished.wait(max(0.0, deadline - time.monotonic()))
    os._exit(1)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _shutdown_thread
    if _shutdown_thread is None:
        logger.info("SIGTERM: draining, then shutting down")
        begin_draining()
        _shutdown_thread = threading.Thread(
            target=_shut_down_then_exit, name="flask-resilience shutdown", daemon=True
        )
        _shutdown_thread.start()
    elif _shutdown_done.is_set():
        # Sent by the shutdown thread once it is done: leave the way Python does.
        raise SystemExit(0)
    else:
        logger.info("SIGTERM again: the shutdown is under way")


def _shut_down_then_exit() -> None:
    shutdown_all()
    _shutdown_done.set()
    # The main thread runs the server; a signal is what wakes it up, to raise SystemExit.
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_EXIT_GRACE)
    # Only reached when the main thread swallowed SystemExit.
    logger.error(  # pragma: no cover
        "The main thread did not exit after the shutdown; ending the process"
    )
    os._exit(0)  # pragma: no cover
