"""Request ids, request context on every log record, the extension's loggers and JSON logs.

The extension's records go where the app's own go, with no logging set-up at all:
each part logs on a child of ``app.logger`` (``<app>.flask_resilience.<part>``),
which passes its records to the handlers of ``app.logger`` (Flask's default
handler, when the app configured none) and on to the root logger's. Crashes are
logged by Flask itself ("Exception on /path [GET]" on ``app.logger``); the
extension never filters a record out.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, current_app, g, has_app_context, has_request_context, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request

from .tracecontext import (
    Trace,
    active_span_trace,
    incoming_trace_id,
    record_span_events,
    request_trace,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .state import ResilienceState


REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SECRET_NAME = re.compile(r"pass|token|secret|key|card|auth|cookie|session|cvv|pin", re.I)
_SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})
SCRUBBED = "[scrubbed]"

# The attributes every log record gets, "-" outside a request.
CONTEXT_FIELDS = ("request_id", "method", "path", "remote_addr", "user_id", "trace_id", "span_id")


LOGGER_NAME = "flask_resilience"


class ExtensionLogger:
    """The logger of one part of the extension, looked up for the app at hand on each call.

    In an app context (or for the ``app`` it was made for) it is the child
    ``flask_resilience.<part>`` of ``app.logger``: routable by name
    (``logging.getLogger(f"{app.name}.flask_resilience")``) and shown wherever the
    app's own records are. ``app.logger`` is only touched when a record is
    written, as Flask does, so that Flask decides about its default handler at
    the same moment it would have without the extension. Outside any app (a
    decorator in a job) it is the logger ``flask_resilience.<part>``.
    """

    def __init__(self, part: str = "", app: Flask | None = None) -> None:
        self.part = part
        self.name = f"{LOGGER_NAME}.{part}" if part else LOGGER_NAME
        # Weakly: a monitor thread holding it must not keep a discarded app alive.
        self._app = weakref.ref(app) if app is not None else None

    def get(self) -> logging.Logger:
        app = self._app() if self._app is not None else None
        if app is None:
            if not has_app_context():
                return logging.getLogger(self.name)
            app = current_app
        return app.logger.getChild(self.name)

    def bound_to(self, app: Flask) -> ExtensionLogger:
        """The same part's logger for ``app``, for threads that run outside its context."""
        return ExtensionLogger(self.part, app)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        self._log(level, msg, args, kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._log(logging.DEBUG, msg, args, kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._log(logging.INFO, msg, args, kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._log(logging.WARNING, msg, args, kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._log(logging.ERROR, msg, args, kwargs)

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self._log(logging.ERROR, msg, args, kwargs)

    def _log(self, level: int, msg: object, args: tuple[object, ...], kwargs: Any) -> None:
        logger = self.get()
        if logger.isEnabledFor(level):
            # The record names the line that called one of the methods above.
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 2
            logger.log(level, msg, *args, **kwargs)


logger = ExtensionLogger()
# Outside any app (a decorator in a job), the app that runs the code decides where
# the records go, as with any library.
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

ENVIRON_REQUEST_ID = "flask_resilience.request_id"
ENVIRON_STARTED = "flask_resilience.started"


FinishHook = Callable[["WSGIEnvironment", float], None]


class RequestMiddleware:
    """Give each request its id and start time, echo the id, and time the request.

    A WSGI middleware rather than request hooks: it costs a fraction of one
    Flask hook, it runs before anything in the app can fail, and it stamps every
    response, those of error pages included.

    :param header: the request id's header (``RESILIENCE_REQUEST_ID_HEADER``): a
        valid incoming one is kept, and every response carries it; ``None``
        neither reads nor sends one.
    :param on_finish: called with the environ and the seconds the app took,
        after the app has answered and its request context is gone.
    """

    def __init__(
        self,
        wsgi_app: WSGIApplication,
        header: str | None = REQUEST_ID_HEADER,
        on_finish: FinishHook | None = None,
    ) -> None:
        self.wsgi_app = wsgi_app
        self.header = header
        self.environ_key = "HTTP_" + header.upper().replace("-", "_") if header else ""
        self.lowered_header = header.lower() if header else ""
        self.on_finish = on_finish

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request_id = environ.get(self.environ_key, "") if self.header else ""
        if not (request_id and _VALID_REQUEST_ID.fullmatch(request_id)):
            # A request in a trace is known by the trace's id: one id in logs and traces.
            request_id = incoming_trace_id(environ) or new_request_id()
        environ[ENVIRON_REQUEST_ID] = request_id
        started = environ[ENVIRON_STARTED] = time.perf_counter()
        header = self.header
        if header is None:
            body = self.wsgi_app(environ, start_response)
        else:
            lowered = self.lowered_header

            def start_response_with_id(
                status: str, headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Any:
                for name, _ in headers:
                    if name.lower() == lowered:  # the app set its own
                        break
                else:
                    headers.append((header, request_id))
                return start_response(status, headers, exc_info)

            body = self.wsgi_app(environ, start_response_with_id)
        if self.on_finish is not None:
            self.on_finish(environ, time.perf_counter() - started)
        return body


def _reseed_request_ids() -> None:
    global _id_prefix, _id_counter
    _id_prefix = secrets.token_hex(8)
    _id_counter = itertools.count()


_id_prefix = secrets.token_hex(8)
_id_counter = itertools.count()
# A forked worker must not hand out its parent's ids.
os.register_at_fork(after_in_child=_reseed_request_ids)


def new_request_id() -> str:
    """32 hex digits: a random prefix per process and a counter.

    Unique without a system call per request; request ids need not be secret.
    """
    return f"{_id_prefix}{next(_id_counter):016x}"


ENVIRON_STATE = "flask_resilience.state"


@dataclass
class RequestState:
    """What the extension tracks for the request being served.

    Kept in the request's WSGI environ, not on ``g``: ``g`` belongs to the app
    context, which requests share when one is pushed around them (in tests, in
    a CLI command that makes requests), and each request needs its own.
    """

    request_id: str
    started: float
    logged: bool = False
    counted: bool = False  # its failure was told to the signals (problems.count_answer)
    # Its trace when no OpenTelemetry span covers it (flask_resilience.tracecontext),
    # made on first need.
    trace: Trace | None = None


def request_state() -> RequestState:
    """The current request's state, made on first use: most requests never need it."""
    return state_of(request.environ)


def state_of(environ: WSGIEnvironment) -> RequestState:
    """The state of the request of ``environ``, made on first use."""
    state: RequestState | None = environ.get(ENVIRON_STATE)
    if state is None:
        state = environ[ENVIRON_STATE] = RequestState(
            request_id=environ.get(ENVIRON_REQUEST_ID) or new_request_id(),
            started=environ.get(ENVIRON_STARTED) or time.perf_counter(),
        )
    return state


def current_request_id() -> str | None:
    """The id of the request being served, or ``None`` outside a request."""
    return request_state().request_id if has_request_context() else None


def current_trace() -> Trace | None:
    """The trace and span of the code running now: the active OpenTelemetry span's,
    else the current request's; ``None`` outside both."""
    active = active_span_trace()
    if active is not None or not has_request_context():
        return active
    return trace_of(request.environ)


def trace_of(environ: WSGIEnvironment) -> Trace:
    """The trace of the request of ``environ`` when no OpenTelemetry span covers it."""
    state = state_of(environ)
    if state.trace is None:
        state.trace = request_trace(environ, state.request_id)
    return state.trace


def init_app(app: Flask, state: ResilienceState) -> None:
    settings = state.settings
    # Built with the other layers, once every part has added its finish hook.
    state.path.add_layer(
        "request_id",
        lambda wsgi_app: RequestMiddleware(
            wsgi_app, settings.request_id_header, _call_all(state.finish_hooks)
        ),
    )
    if settings.log_context:
        install_record_context()
    _log_each_exception_once(app)
    tag_sentry_events()
    record_span_events()
    if settings.log_json:
        use_json_logs(app)


def _call_all(hooks: list[FinishHook]) -> FinishHook | None:
    """One call for every hook; the hook itself when there is one, as there usually is."""
    if len(hooks) <= 1:
        return hooks[0] if hooks else None
    hooks = list(hooks)

    def call_all(environ: WSGIEnvironment, elapsed: float) -> None:
        for hook in hooks:
            hook(environ, elapsed)

    return call_all


_sentry_tagged = False


def tag_sentry_events() -> None:
    """Tag every Sentry event of a request with its ``request_id``, if the app uses Sentry.

    sentry-sdk is never imported here: an app that uses it has imported it by the
    time it sets up its extensions (Sentry's own advice is to initialise it first).
    """
    global _sentry_tagged
    if _sentry_tagged or "sentry_sdk" not in sys.modules:
        return
    from sentry_sdk.scope import add_global_event_processor

    def tag_request_id(event: Any, _hint: Any) -> Any:
        if has_request_context():
            event.setdefault("tags", {})["request_id"] = request_state().request_id
        return event

    add_global_event_processor(tag_request_id)
    _sentry_tagged = True


def _log_each_exception_once(app: Flask) -> None:
    """Leave out Flask's record of an exception that ``log_errors`` logged already.

    Only exceptions the app asked the extension to log (``@log_errors``) are
    marked; every other crash is logged by Flask exactly as it would be.
    """
    log_exception = app.log_exception

    def log_unless_logged(exc_info: Any) -> None:
        if not getattr(exc_info[1], "_resilience_logged", False):
            log_exception(exc_info)

    app.log_exception = log_unless_logged  # type: ignore[method-assign]


def request_context() -> dict[str, Any]:
    """Who asked for what, for a log record: request id, method, path, remote address,
    user id, and the trace and span it runs in."""
    if not has_request_context():
        context = dict.fromkeys(CONTEXT_FIELDS, "-")
        trace = active_span_trace()  # a job's span
        if trace is not None:
            context.update(trace_id=trace.trace_id, span_id=trace.span_id)
        return context
    trace = active_span_trace() or trace_of(request.environ)
    return {
        "request_id": request_state().request_id,
        "method": request.method,
        "path": request.path,
        # ProxyFix, when the app uses it, has already put the client's address here.
        "remote_addr": request.remote_addr or "-",
        "user_id": _user_id(),
        "trace_id": trace.trace_id,
        "span_id": trace.span_id,
    }


def _user_id() -> str:
    """The Flask-Login user's id, without loading a user the request did not load."""
    user = g.get("_login_user")
    if user is None or not getattr(user, "is_authenticated", False):
        return "-"
    try:
        return str(user.get_id())
    except Exception:  # a broken user object must not break logging
        return "-"


class _YieldingAttributes(dict[str, Any]):
    """A record's attributes, where those the extension added give way to ``extra=``.

    ``Logger.makeRecord`` refuses an ``extra`` key the record already has, so an app
    logging ``extra={"user_id": ...}`` would crash once the factory had set
    ``user_id``. The keys the extension adds are not "in" the record for that test
    only: the app's value replaces them. Formatting and attribute access see them.
    """

    _YIELDING = frozenset({*CONTEXT_FIELDS, "request"})

    def __contains__(self, key: object) -> bool:
        return key not in self._YIELDING and super().__contains__(key)


def install_record_context() -> None:
    """Give every log record the request's context attributes, and an error record
    with a traceback the request itself (:func:`scrubbed_request`).

    A record factory rather than a filter on one logger: records from the app's own
    loggers (``logging.getLogger(__name__)``) propagate to the root handlers without
    passing through the filters of ``app.logger``, and they need the id too.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_resilience", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        context = request_context()
        if record.exc_info and has_request_context():
            # A crash (Flask's "Exception on ..." record): what was asked, secrets scrubbed.
            context["request"] = scrubbed_request()
        record.__dict__ = _YieldingAttributes({**record.__dict__, **context})
        return record

    factory._resilience = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def log_error(
    error: BaseException | None, status: int, *, message: str | None = None, outage: bool = False
) -> None:
    """Log one failed request, once, with its context.

    A 5xx for an exception is an error with its traceback: a crash the extension
    answered itself (``safe_route_handler``), which Flask never saw. Any other 5xx
    is an answer the app chose (a breaker open, a full bulkhead): a warning. So is
    an ``outage``, a database error recognised as the server being unreachable
    (503) or a deadline (504): its warning carries the exception's first line, so
    that an outage failing a hundred requests a second logs a hundred lines, not a
    hundred tracebacks. 4xx answers are the client's mistakes, logged at INFO.
    """
    state = request_state()
    if state.logged:
        return
    mark_logged()
    if error is not None:
        error._resilience_logged = True  # type: ignore[attr-defined]
    elapsed_ms = (time.perf_counter() - state.started) * 1000
    context = request_context()
    text = message or (type(error).__name__ if error is not None else "error")
    crashed = (
        status >= 500 and error is not None and not isinstance(error, HTTPException) and not outage
    )
    if outage and error is not None:
        text = f"{text}: {first_line(error)}"
    level = logging.ERROR if crashed else logging.WARNING if status >= 500 else logging.INFO
    _write_answer(
        logger,
        level,
        context,
        status,
        elapsed_ms,
        text,
        scrubbed_request(),
        error if crashed else None,
    )


def log_refusal(app: Flask, asked: Request, error: HTTPException) -> None:
    """Log a refusal answered before Flask saw the request (a shed request), as
    :func:`log_error` logs it in a request: the same warning line and attributes."""
    state = state_of(asked.environ)
    state.logged = True
    elapsed_ms = (time.perf_counter() - state.started) * 1000
    trace = trace_of(asked.environ)
    context = {
        "request_id": state.request_id,
        "method": asked.method,
        "path": asked.path,
        "remote_addr": asked.remote_addr or "-",
        "user_id": "-",  # nothing was loaded for it
        "trace_id": trace.trace_id,
        "span_id": trace.span_id,
    }
    status = error.code or 503
    text = f"{type(error).__name__}: {error.description}"
    details = scrubbed_request(asked)
    _write_answer(logger.bound_to(app), logging.WARNING, context, status, elapsed_ms, text, details)


def _write_answer(
    to: ExtensionLogger,
    level: int,
    context: Mapping[str, Any],
    status: int,
    elapsed_ms: float,
    text: str,
    details: Mapping[str, Any],
    crash: BaseException | None = None,
) -> None:
    to.log(
        level,
        "%s %s -> %d in %.1f ms: %s [request_id=%s remote_addr=%s user_id=%s]",
        context["method"],
        context["path"],
        status,
        elapsed_ms,
        text,
        context["request_id"],
        context["remote_addr"],
        context["user_id"],
        exc_info=crash,
        # The context too: outside a request the record factory knows none of it.
        extra={
            **context,
            "status": status,
            "duration_ms": round(elapsed_ms, 1),
            "request": details,
        },
    )


def mark_logged() -> None:
    """Say that the current request's failure is logged: Flask logged it, or the extension."""
    request_state().logged = True


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, shortened: enough to tell outages apart."""
    line = str(error).strip().partition("\n")[0]
    return line if len(line) <= 200 else line[:199] + "…"


def scrubbed_request(asked: Request | None = None) -> dict[str, Any]:
    """Headers, query and parsed fields of the request (the current one by default),
    secret-looking values scrubbed."""
    if asked is None:
        asked = request._get_current_object()  # type: ignore[attr-defined]
    headers = {
        name: SCRUBBED if name.lower() in _SECRET_HEADERS or _SECRET_NAME.search(name) else value
        for name, value in asked.headers.items()
    }
    return {
        "headers": headers,
        "args": scrub(dict(asked.args.items())),
        "fields": scrub(_parsed_fields(asked)),
    }


def _parsed_fields(asked: Request) -> Mapping[str, Any]:
    """The form or JSON fields the app already parsed; the body is never read here.

    Reading it could fail again (the body may be why the request failed) or pull
    a large upload into a log record.
    """
    form = vars(asked).get("form")
    if form:
        return dict(form.items())
    body = getattr(asked, "_cached_json", (None, None))[0]
    return body if isinstance(body, Mapping) else {}


def hide_password(url: str) -> str:
    """``url`` with its password, if it has one, shown as ``***``: for logs, health and
    the command line. Any URL with a network location: SQLAlchemy's, Redis's."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL at all (a bad port, say): nothing to hide in it
        return url
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def scrub(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with the value of every secret-looking name replaced."""
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if _SECRET_NAME.search(str(name)):
            clean[name] = SCRUBBED
        elif isinstance(value, Mapping):
            clean[name] = scrub(value)
        else:
            clean[name] = value if isinstance(value, (int, float, bool)) else str(value)[:200]
    return clean


# What every LogRecord has; anything else on a record is an extra, kept in JSON logs.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log shippers: time, level, logger, message, and
    every extra attribute the record carries (the request context, ``extra=`` of the
    call, a trace id an instrumentation added), an exception's traceback included."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in entry and value not in (None, "-"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def use_json_logs(app: Flask) -> None:
    """Format the app's and the root logger's handlers as JSON lines.

    Opt-in (``RESILIENCE_LOG_JSON``): it changes handlers the app may share.
    When there is no handler at all, one writing to standard error is added.
    """
    from flask.logging import default_handler

    handlers = [*logging.getLogger().handlers, *app.logger.handlers]
    if not handlers:
        handler = logging.StreamHandler()
        logging.getLogger().addHandler(handler)
        handlers = [handler]
    formatter = JsonFormatter()
    for handler in {*handlers, default_handler}:
        handler.setFormatter(formatter)
