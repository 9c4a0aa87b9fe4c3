"""The request path: every WSGI layer and request hook of the extension, in one order.

A request meets the extension's WSGI layers from the outside in, in the order of
:data:`LAYERS`, then Flask. Each part hands its layer to :meth:`RequestPath.add_layer`
under one of these names, and :func:`build` wraps them in this order whatever
the order the parts were set up in:

``settle``
    Outermost: the first request of the app settles the hooks below, and the
    other parts' first-request callbacks run, before anything else looks at it.
``liveness``
    Health answers ``/health/live`` here, before any other work, and times every
    request that goes further, its error answers included.
``in_flight``
    The graceful shutdown counts the requests being served from here on.
``proxies``
    Werkzeug's ``ProxyFix`` for ``RESILIENCE_TRUSTED_PROXIES``: the client's real
    address and scheme, before anything records them.
``request_id``
    The request's id and arrival time (the deadline's clock), before anything in
    the app can fail; every response is stamped with the id.
``shed``
    Load shedding: a request that queued too long is refused here, before Flask,
    when nothing but the extension would see the refusal there; inside the id, so
    that its answer carries it (see ``shedding``).
``deadline``
    With ``RESILIENCE_INTERRUPT_ON_DEADLINE``: the request is interrupted at its
    deadline and answered 504 here, inside the id (its answer carries it) and
    outside Flask (whose teardown runs first, its session released).
``session_guard``
    Innermost, next to Flask: keeps the session interface wrapped when another
    extension replaced it, and the session checks installed when a validator is
    registered late.

Inside Flask, the ``before_request`` functions of the app run in this order:

1. :meth:`RequestPath.first_look`, first of all. It decides, without answering,
   whether the request is refused: load shedding refuses a request that the
   ``shed`` layer let through because the refusal would be seen here (a shed
   request does no other work, the session checks included), and the session
   checks clear a session that must not be trusted before any extension or the
   app reads it. Answering here would skip the hooks behind it, the span of a
   tracing instrumentation or a metrics timer among them.
2. The hooks of installed extensions (OpenTelemetry's Flask instrumentation, a
   metrics exporter...), in the order they were registered: they see every
   request, the refused ones too.
3. :meth:`RequestPath.gate`: answers the refusal the first look found (503 shed,
   401 session expired), then runs the rate limit (Flask-Limiter's own check,
   moved here), so that a refused request runs none of the app's own hooks.
   Without hooks of other extensions, the first look and the gate are one hook.
4. The app's own hooks (those of its package, or of no installed distribution),
   in their order.

The hooks are placed when the app's first request arrives, once every hook is
registered (Flask refuses new ones after that). Errors the app has no handler for
are answered by ``problems``, as the fallback of Flask's own handler lookup.
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

from flask import (
    Flask,
    appcontext_popped,
    appcontext_pushed,
    appcontext_tearing_down,
    request,
    request_finished,
    request_started,
    request_tearing_down,
)
from flask.typing import ResponseReturnValue

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

LAYERS = (
    "settle",
    "liveness",
    "in_flight",
    "proxies",
    "request_id",
    "shed",
    "deadline",
    "session_guard",
)
"""The WSGI layers, outermost first; the module's docstring says why each sits there."""

Layer = Callable[["WSGIApplication"], "WSGIApplication"]
"""Wraps the WSGI app it is given; returns the wrapper."""

Refusal = Callable[[], ResponseReturnValue]
"""Makes the answer to a refused request (or raises it), when the gate runs."""

Look = Callable[[], Refusal | None]
Gate = Callable[[], Any]
"""A check that answers a request (returns what a view may return) or lets it go on."""

_REFUSAL = "flask_resilience.refusal"


@dataclass(eq=False)
class RequestPath:
    """What the extension puts on one app's request path."""

    layers: dict[str, Layer] = field(default_factory=dict)
    looks: list[Look] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)
    """Checks that may answer: the rate limit."""
    settle_callbacks: list[Callable[[], None]] = field(default_factory=list)
    settled: bool = False
    refusals_unseen: bool = False
    """Whether a request refused in the first look meets no code but the extension's,
    Flask-Limiter's and Flask-SQLAlchemy's in Flask (known once settled)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_layer(self, name: str, layer: Layer) -> None:
        if name not in LAYERS:
            raise ValueError(f"{name!r} is not a layer of the request path: {', '.join(LAYERS)}.")
        self.layers[name] = layer

    def add_look(self, app: Flask, look: Look, *, first: bool = False) -> None:
        """Run ``look`` in the first look (before the others when ``first``); added after
        the first request, it runs from the next one on."""
        with self._lock:
            if look in self.looks:
                return
            # A new list: a request in flight keeps the one it started with.
            self.looks = [look, *self.looks] if first else [*self.looks, look]
            if self.settled:
                _place(app, self)

    def add_gate(self, gate: Gate) -> None:
        self.gates = [*self.gates, gate]

    def on_first_request(self, callback: Callable[[], None]) -> None:
        self.settle_callbacks.append(callback)

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

    def look_then_gate(self) -> Any:
        """The first look and the gate in one hook, when no extension's hook runs between."""
        self.first_look()
        return self.gate()


def build(app: Flask, path: RequestPath) -> None:
    """Wrap ``app.wsgi_app`` in the parts' layers, in the order of :data:`LAYERS`."""
    path.layers["settle"] = _settle_first(app, path)
    wsgi_app: WSGIApplication = app.wsgi_app
    for name in reversed(LAYERS):  # innermost first
        layer = path.layers.get(name)
        if layer is not None:
            wsgi_app = layer(wsgi_app)
    app.wsgi_app = wsgi_app  # type: ignore[method-assign,assignment]


def _settle_first(app: Flask, path: RequestPath) -> Layer:
    def layer(wsgi_app: WSGIApplication) -> WSGIApplication:
        def settle_first(
            environ: WSGIEnvironment, start_response: StartResponse
        ) -> Iterable[bytes]:
            if not path.settled:
                settle(app, path)
            return wsgi_app(environ, start_response)

        return settle_first

    return layer


def settle(app: Flask, path: RequestPath) -> None:
    """Put the hooks in their places and run the first-request callbacks, once."""
    with path._lock:
        if path.settled:
            return
        for callback in path.settle_callbacks:
            callback()
        _place(app, path)
        path.refusals_unseen = _refusals_unseen(app, path)
        path.settled = True


def _place(app: Flask, path: RequestPath) -> None:
    if not (path.looks or path.gates):
        return  # nothing of ours to run: the app's hooks stay exactly as they are
    ours: list[Callable[[], Any]] = [path.first_look, path.gate, path.look_then_gate]
    others = [f for f in app.before_request_funcs.get(None, ()) if f not in ours]
    extensions = [f for f in others if not _belongs_to_app(app, f)]
    own = [f for f in others if _belongs_to_app(app, f)]
    if not path.looks:
        placed = [*extensions, path.gate]
    elif extensions:
        placed = [path.first_look, *extensions, path.gate]
    else:  # one hook: Flask's call of each costs more than the work of either
        placed = [path.look_then_gate]
    # A new list rather than changes in place, so that a request going through the
    # old one in another thread does not see its functions shift.
    app.before_request_funcs[None] = [*placed, *own]


_QUIET_HOOK_OWNERS = frozenset({"flask_resilience", "flask_limiter", "flask_sqlalchemy"})
"""Whose hooks do nothing to a refused request: the extension's own, Flask-Limiter's
(headers of the limits counted, and a refused request counted none) and
Flask-SQLAlchemy's (removing a session that was never opened)."""

_REQUEST_SIGNALS = (
    request_started,
    request_finished,
    request_tearing_down,
    appcontext_pushed,
    appcontext_popped,
    appcontext_tearing_down,
)


def _refusals_unseen(app: Flask, path: RequestPath) -> bool:
    """No hook of another extension runs before the gate, none of the app's or another
    extension's after a refusal, and no URL value preprocessor before either."""
    ours = (path.first_look, path.gate, path.look_then_gate)
    before = [f for f in app.before_request_funcs.get(None, ()) if f not in ours]
    if not all(_belongs_to_app(app, f) for f in before):
        return False
    if any(app.url_value_preprocessors.values()):
        return False
    after = [
        *(f for functions in app.after_request_funcs.values() for f in functions),
        *(f for functions in app.teardown_request_funcs.values() for f in functions),
        *app.teardown_appcontext_funcs,
    ]
    return all(_owner(f) in _QUIET_HOOK_OWNERS for f in after)


def flask_signals_heard() -> bool:
    """Whether anybody listens to Flask's signals of a request (sentry-sdk, a metrics
    exporter): they must hear of refused requests too. A muted signal (blinker's
    ``Signal.muted()``) is heard by nobody."""
    return any(
        signal.receivers and not getattr(signal, "is_muted", False) for signal in _REQUEST_SIGNALS
    )


def _module_name(function: Callable[..., Any]) -> str:
    """The module of ``function`` (of a partial's function)."""
    return getattr(getattr(function, "func", function), "__module__", None) or ""


def _owner(function: Callable[..., Any]) -> str:
    """The top-level package of ``function``."""
    return _module_name(function).partition(".")[0]


def _belongs_to_app(app: Flask, function: Callable[..., Any]) -> bool:
    """Whether ``function`` is the app's own code rather than an installed extension's."""
    module_name = _module_name(function)
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
