"""Interrupting a request at its deadline (``RESILIENCE_INTERRUPT_ON_DEADLINE``).

A request still running at its deadline gets :class:`RequestInterrupted` raised
where it is, and is answered 504 problem+json. How it is raised depends on the
thread that serves the request:

* In the process's main thread (gunicorn's sync workers, a single-threaded
  server), a ``SIGALRM`` set for the deadline raises it wherever the request is in
  Python code or in a blocking call that Python waits on: ``time.sleep``, a socket
  read without a timeout, a loop. Only C code that holds the interpreter (a long
  regular expression, a C extension's computation) runs to its end first.
* In another thread (gthread workers, threaded servers), the deadline watch asks
  the interpreter to raise it in that thread, which happens between two Python
  operations: a blocking call is not cut short there, which is why statements and
  outbound calls have their own bounds.

It is a ``BaseException``, as ``KeyboardInterrupt`` is: an ``except Exception`` of
the app does not swallow it, ``finally`` blocks run, and SQLAlchemy discards a
connection it interrupted mid-statement instead of pooling it dirty. The worker
lives on and serves its next request, before the server's own timeout (keep
gunicorn's ``timeout`` above the longest budget) kills it.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING, Any

from flask import Flask

from ..errors import RequestDeadlineExceeded
from ..log import ENVIRON_REQUEST_ID, ENVIRON_STARTED, ExtensionLogger, mark_logged
from ..pipeline import Layer
from ..problems import count_answer
from .watch import watch

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = ExtensionLogger("deadlines")


INTERRUPTED = "flask_resilience.interrupted"
"""Set in the environ of a request that was interrupted (and logged as such)."""


class RequestInterrupted(BaseException):
    """Raised in a request that is still running at its deadline."""


class _Alarm:
    """The interruption of one request at its deadline; disarmed when it ends in time."""

    def __init__(self, deadline: float) -> None:
        self.active = True
        self.fired = False
        self.thread = threading.current_thread()
        self._lock = threading.Lock()
        if self.thread is threading.main_thread():
            _install_signal_handler()
            _Alarm.current = self
            signal.setitimer(signal.ITIMER_REAL, max(deadline - time.perf_counter(), 1e-3))
            self._token = 0
        else:
            self._token = watch.arm(deadline, self._interrupt_thread)

    current: _Alarm | None = None
    """The alarm of the main thread's request, which the signal handler reads."""

    def fire_in_main_thread(self) -> None:
        if self.active:
            self.fired = True
            raise RequestInterrupted

    def _interrupt_thread(self) -> None:
        with self._lock:
            if not self.active or self.thread.ident is None:
                return
            self.fired = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.thread.ident), ctypes.py_object(RequestInterrupted)
            )

    def disarm(self) -> None:
        with self._lock:
            self.active = False
            if self.thread is threading.main_thread():
                signal.setitimer(signal.ITIMER_REAL, 0)
                _Alarm.current = None
            else:
                watch.disarm(self._token)
                if self.fired:  # raised, or still pending: take a pending one back
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(
                        ctypes.c_ulong(self.thread.ident or 0), None
                    )


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    alarm = _Alarm.current
    if alarm is not None:
        alarm.fire_in_main_thread()


_handler_installed = False


def _install_signal_handler() -> None:
    global _handler_installed
    if not _handler_installed:
        signal.signal(signal.SIGALRM, _on_alarm)
        _handler_installed = True


def interrupting_layer(app: Flask, budget_of: Any) -> Layer:
    """The ``deadline`` layer: arms each request's alarm, answers the interrupted ones.

    :param budget_of: ``(environ) -> seconds or None``, the request's budget.
    """
    log = logger.bound_to(app)

    def layer(wsgi_app: WSGIApplication) -> WSGIApplication:
        def interrupting(
            environ: WSGIEnvironment, start_response: StartResponse
        ) -> Iterable[bytes]:
            budget = budget_of(environ)
            if budget is None:
                return wsgi_app(environ, start_response)
            started: float = environ.get(ENVIRON_STARTED) or time.perf_counter()
            alarm = _Alarm(started + budget)
            body: Iterable[bytes] | None = None
            answer = _HeldAnswer(start_response)
            try:
                try:
                    body = wsgi_app(environ, answer)
                finally:
                    alarm.disarm()
            except RequestInterrupted:
                if body is not None:
                    answer.pass_on()
                    return body  # the deadline fell as the answer was being handed over
                environ[INTERRUPTED] = True
                log.warning(
                    "%s %s -> 504: interrupted at its deadline, %.1f s after it arrived"
                    " [request_id=%s]",
                    environ.get("REQUEST_METHOD"),
                    environ.get("PATH_INFO"),
                    time.perf_counter() - started,
                    environ.get(ENVIRON_REQUEST_ID),
                )
                # Interrupted after the app had started its answer (in a teardown,
                # say): the held answer is dropped and the 504 given in its place. Only
                # an answer the app already wrote to (WSGI's write()) is the server's;
                # WSGI lets the 504 replace it with exc_info alone.
                replace = partial(_restart_response, start_response) if answer.passed else None
                return _answer_504(app, environ, replace or start_response)
            answer.pass_on()
            return body

        return interrupting

    return layer


class _HeldAnswer:
    """The app's ``start_response``, passed on to the server once the app has returned.

    A request interrupted after its view answered is answered 504 instead. Had the
    first status and headers been passed on at once, the server would have to
    replace them, which WSGI allows with ``exc_info``; gunicorn then sends the new
    headers after the old ones, two Content-Lengths among them, and the client of a
    keep-alive connection reads the wrong number of bytes and cannot parse the next
    answer.
    """

    def __init__(self, start_response: StartResponse) -> None:
        self.start_response = start_response
        self.held: tuple[Any, ...] | None = None
        self.passed = False
        self._write: Callable[[bytes], object] | None = None

    def __call__(self, *args: Any) -> Callable[[bytes], object]:
        if self.passed:  # an app that starts its answer as its body is iterated
            return self.start_response(*args)
        self.held = args  # a later call (with exc_info) replaces the answer
        return self.write

    def write(self, data: bytes) -> object:
        """WSGI's write(): the answer can no longer be held."""
        self.pass_on()
        assert self._write is not None
        return self._write(data)

    def pass_on(self) -> None:
        """Hand the held answer, if any, to the server; later calls go straight to it."""
        if not self.passed:
            self.passed = True
            if self.held is not None:
                self._write = self.start_response(*self.held)


def _restart_response(
    start_response: StartResponse, status: str, headers: list[tuple[str, str]], *_: Any
) -> Any:
    try:
        raise RequestInterrupted
    except RequestInterrupted:
        return start_response(status, headers, sys.exc_info())


def _answer_504(
    app: Flask, environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    """The app's own answer to a deadline: its 504 handler, or the problem document."""
    error = RequestDeadlineExceeded(
        "The request took longer than its time limit.", where="interrupted"
    )
    with app.request_context(environ):
        mark_logged()  # logged above, as an interruption
        count_answer(error)
        response = app.make_response(app.handle_http_exception(error))
    return response(environ, start_response)
