"""Where the extension's request hooks stand among the app's and other extensions'.

A request meets the ``before_request`` functions of the app in this order:

1. :meth:`RequestHooks.first_look`, first of all. It decides, without answering,
   whether the request is refused: load shedding reads ``X-Request-Start`` (a shed
   request does no other work, the session checks included), and the session
   checks clear a session that must not be trusted before any extension or the
   app reads it. Answering here would skip the hooks behind it, the span of a
   tracing instrumentation or a metrics timer among them.
2. The hooks of installed extensions (OpenTelemetry's Flask instrumentation, a
   metrics exporter...), in the order they were registered: they see every
   request, the refused ones too.
3. :meth:`RequestHooks.gate`: answers the refusal the first look found (503 shed,
   401 session expired), then runs the rate limit (Flask-Limiter's own check,
   moved here), so that a refused request runs none of the app's own hooks.
4. The app's own hooks (those of its package, or of no installed distribution),
   in their order.

The order is settled when the app's first request arrives, once every hook is
registered (Flask refuses new ones after that); ``on_first_request`` callbacks
of the other parts run at the same moment.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from flask import Flask, request
from flask.typing import ResponseReturnValue

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

Refusal = Callable[[], ResponseReturnValue]
"""Makes the answer to a refused request (or raises it), when the gate runs."""

Look = Callable[[], Refusal | None]
Gate = Callable[[], Any]
"""A check that answers a request (returns what a view may return) or lets it go on."""

_REFUSAL = "flask_resilience.refusal"


@dataclass(eq=False)
class RequestHooks:
    """The extension's two ``before_request`` functions for one app, and what they run."""

    looks: list[Look] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)
    """Checks that may answer: the rate limit."""
    settle_callbacks: list[Callable[[], None]] = field(default_factory=list)
    settled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def first_look(self) -> None:
        for look in self.looks:
            refusal = look()
            if refusal is not None:
                request.environ[_REFUSAL] = refusal
                return

    def gate(self) -> Any:
        refusal: Refusal | None = request.environ.pop(_REFUSAL, None)
        if refusal is not None:
            return refusal()
        for check in self.gates:
            answer = check()
            if answer is not None:
                return answer
        return None


def install(app: Flask, hooks: RequestHooks) -> None:
    """Put ``hooks`` in place when the app's first request arrives."""
    wsgi_app = app.wsgi_app

    def settle_first(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not hooks.settled:
            settle(app, hooks)
        return wsgi_app(environ, start_response)

    app.wsgi_app = settle_first  # type: ignore[method-assign]


def add_look(app: Flask, hooks: RequestHooks, look: Look, *, first: bool = False) -> None:
    """Run ``look`` in the first look (before the others when ``first``); added after the
    first request, it runs from the next one on."""
    with hooks._lock:
        if look in hooks.looks:
            return
        # A new list: a request in flight keeps the one it started with.
        hooks.looks = [look, *hooks.looks] if first else [*hooks.looks, look]
        if hooks.settled:
            _place(app, hooks)


def settle(app: Flask, hooks: RequestHooks) -> None:
    """Put the hooks in their places and run the first-request callbacks, once."""
    with hooks._lock:
        if hooks.settled:
            return
        for callback in hooks.settle_callbacks:
            callback()
        _place(app, hooks)
        hooks.settled = True


def _place(app: Flask, hooks: RequestHooks) -> None:
    if not (hooks.looks or hooks.gates):
        return  # nothing of ours to run: the app's hooks stay exactly as they are
    ours: list[Callable[[], Any]] = [hooks.first_look, hooks.gate]
    others = [f for f in app.before_request_funcs.get(None, ()) if f not in ours]
    extensions = [f for f in others if not _belongs_to_app(app, f)]
    own = [f for f in others if _belongs_to_app(app, f)]
    first: list[Callable[[], Any]] = [hooks.first_look] if hooks.looks else []
    # A new list rather than changes in place, so that a request going through the
    # old one in another thread does not see its functions shift.
    app.before_request_funcs[None] = [*first, *extensions, hooks.gate, *own]


def _belongs_to_app(app: Flask, function: Callable[..., Any]) -> bool:
    """Whether ``function`` is the app's own code rather than an installed extension's."""
    module_name = getattr(getattr(function, "func", function), "__module__", None) or ""
    if module_name.partition(".")[0] == app.import_name.partition(".")[0]:
        return True
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path is None:
        return True
    path = os.path.realpath(path)
    return not any(path.startswith(directory) for directory in _installed_code_directories())


@cache
def _installed_code_directories() -> tuple[str, ...]:
    """Where installed distributions live: the site-packages folders and the standard library."""
    paths = sysconfig.get_paths()
    candidates = {paths["purelib"], paths["platlib"], paths["stdlib"], *site.getsitepackages()}
    if site.ENABLE_USER_SITE:
        candidates.add(site.getusersitepackages())
    return tuple(os.path.realpath(path) + os.sep for path in candidates if path)
