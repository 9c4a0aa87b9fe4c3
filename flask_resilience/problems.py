"""RFC 9457 problem documents for the 4xx and 5xx answers the app has no handler for.

The extension is the fallback of Flask's own search for an error handler: Flask
looks through the handlers of the blueprint and of the app, for the status code
and then along the exception's classes, and only when it finds none does the
extension answer. So every handler the app registers, before or after
``init_app``, for a code or for any exception class (``HTTPException``,
``Exception``...), wins, and no handler of the app is ever replaced.

Unhandled exceptions go through Flask's own path: ``got_request_exception`` is
sent (error trackers hear of it), Flask logs "Exception on /path [GET]" with the
traceback on ``app.logger``, and only then is the 500 answered here. A database
outage (a connection refused, lost or timed out, see
:func:`~flask_resilience.outages.classify_database_error`) is not a crash: it is
answered 503 (504 for a deadline) as soon as the view raises it, logged as one
warning line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.sansio.response import Response as ResponseBase
from werkzeug.wrappers import Request

from . import log, signals
from .errors import DatabaseUnavailable, ProblemError, RequestDeadlineExceeded
from .outages import classify_database_error
from .state import ResilienceState, get_state

if TYPE_CHECKING:
    from .config import Settings

PROBLEM_JSON = "application/problem+json"
_NO_BODY_HEADERS = frozenset({"content-type", "content-length"})

_HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{status} {title}</title>
<style>
body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;color:#222}}
h1{{font-size:1.5rem}} small{{color:#666}}
</style></head>
<body><h1>{status} {title}</h1><p>{detail}</p>
<p><small>Request id: {request_id}</small></p></body></html>
"""


def init_app(app: Flask, state: ResilienceState) -> None:
    """Answer the errors the app has no handler for, unless ``RESILIENCE_ERROR_FORMAT`` is off."""
    if state.settings.error_format != "off":
        fall_back_on_problems(app)


def fall_back_on_problems(app: Flask) -> None:
    """Make the extension's answers what Flask uses when it finds no handler of the app's.

    Flask has no public hook for "no handler was found", so its lookup is wrapped,
    for this app only: whatever it finds is used as it is.
    """
    find_error_handler = app._find_error_handler

    def find_or_fall_back(error: Exception, blueprints: list[str]) -> Any:
        handler = find_error_handler(error, blueprints)
        if handler is not None:
            return handler
        if isinstance(error, HTTPException):
            return handle_http_exception
        if classify_database_error(error) is not None:
            return answer_outage
        return None

    setattr(app, "_find_error_handler", find_or_fall_back)  # noqa: B010


def answer_outage(error: Exception) -> ResponseReturnValue:
    """A database outage raised by a view or a hook: 503 (504 for a deadline), not a crash.

    The answer goes through Flask's handling of HTTP errors, so that an app's own
    handler for 503 or 504 renders it.
    """
    answer = classify_database_error(error)
    assert answer is not None  # the fallback is only chosen for outages
    answer.__cause__ = error
    log.log_error(error, answer.code or 503, outage=True)
    count_answer(answer)
    return current_app.handle_http_exception(answer)


def handle_http_exception(error: HTTPException) -> ResponseBase:
    """Answer an HTTP error, or an unhandled exception Flask wrapped in a 500.

    An exception raised with a ready response (Werkzeug's ``response`` argument;
    Flask-Limiter's 429 with the problem document ``on_breach`` made) is answered
    with it, as Werkzeug's ``HTTPException.get_response`` would.
    """
    original = getattr(error, "original_exception", None)
    if isinstance(error, InternalServerError) and original is not None:
        # Flask logged it already, as the crash it is; an outage that escaped a
        # hook after the view is still answered as one.
        log.mark_logged()
        error = classify_database_error(original) or error
    log.log_error(error, error.code or 500, message=_log_message(error, original))
    count_answer(error)
    if error.response is not None:
        return error.response
    return problem_response(error, original)


def count_answer(error: BaseException) -> None:
    """Tell the signals (metrics, traces) what a failed request was answered, once.

    A database or pool outage is a dependency unavailable; a 504 a deadline
    exceeded, with where it was cut short.
    """
    state = log.request_state()
    if state.counted:
        return
    state.counted = True
    if isinstance(error, DatabaseUnavailable):
        signals.send(signals.dependency_unavailable, dependency=error.dependency)
    elif isinstance(error, RequestDeadlineExceeded):
        signals.send(signals.deadline_exceeded, where=error.where)


def problem_response(error: HTTPException, original: BaseException | None = None) -> Response:
    """The problem document for ``error``, as JSON or, for browsers, HTML."""
    return _rendered(error, problem_body(error, original), _wants_html())


def refusal_before_flask(app: Flask, asked: Request, error: ProblemError) -> Response:
    """What :func:`problem_response` answers ``error`` with, for a request that Flask
    has not seen: no request context is pushed, so the answer costs the least."""
    environ = asked.environ
    settings = get_state(app).settings
    body = _document(
        error,
        error.description or _title(error.code or 503),
        instance=asked.path,
        request_id=log.state_of(environ).request_id,
        trace_id=log.trace_of(environ).trace_id,
        type_base=settings.problem_type_base,
    )
    return _rendered(error, body, _prefers_html(settings, asked))


def _rendered(error: HTTPException, body: Mapping[str, Any], html: bool) -> Response:
    status = error.code or 500
    headers = {
        name: value for name, value in error.get_headers() if name.lower() not in _NO_BODY_HEADERS
    }
    if isinstance(error, ProblemError):
        headers.update(error.extra_headers)
    headers["Cache-Control"] = "no-store"
    if html:
        return Response(_html(body), status, headers, mimetype="text/html")
    return Response(json.dumps(body, default=str), status, headers, mimetype=PROBLEM_JSON)


def problem_body(error: HTTPException, original: BaseException | None = None) -> dict[str, Any]:
    trace = log.current_trace()
    return _document(
        error,
        _detail(error, original),
        instance=request.path,
        request_id=log.request_state().request_id,
        trace_id=trace.trace_id if trace is not None else None,
        type_base=get_state(current_app).settings.problem_type_base,
    )


def _document(
    error: HTTPException,
    detail: str,
    *,
    instance: str,
    request_id: str,
    trace_id: str | None,
    type_base: str,
) -> dict[str, Any]:
    status = error.code or 500
    body: dict[str, Any] = {
        "type": problem_type(error, type_base),
        "title": _title(status),
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    if trace_id is not None:
        body["trace_id"] = trace_id
    if isinstance(error, ProblemError):
        body.update(_safe_members(error.members))
    return body


def problem_type(error: HTTPException, base: str) -> str:
    """The ``type`` URI of ``error``'s problem document (see :class:`ProblemError`);
    ``base`` is ``RESILIENCE_PROBLEM_TYPE_BASE``."""
    if not isinstance(error, ProblemError):
        return "about:blank"
    if error.problem_type:
        return error.problem_type
    if error.kind:
        return base + error.kind
    return "about:blank"


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _detail(error: HTTPException, original: BaseException | None) -> str:
    if original is not None and current_app.debug and isinstance(error, InternalServerError):
        return f"{type(original).__name__}: {original}"
    return error.description or _title(error.code or 500)


def _safe_members(members: Mapping[str, Any]) -> dict[str, Any]:
    reserved = {"type", "title", "status", "instance", "request_id", "trace_id"}
    return {name: value for name, value in members.items() if name not in reserved}


def _log_message(error: HTTPException, original: BaseException | None) -> str:
    if original is not None:
        return f"{type(original).__name__} answered {error.code}"
    return f"{type(error).__name__}: {error.description}"


def _wants_html() -> bool:
    return _prefers_html(get_state(current_app).settings, request)


def _prefers_html(settings: Settings, asked: Request) -> bool:
    """Browsers get a page; API clients, and anything under an API prefix, get JSON."""
    forced = settings.error_format
    if forced != "auto":
        return bool(forced == "html")
    if any(asked.path.startswith(prefix) for prefix in settings.api_prefixes):
        return False
    best = asked.accept_mimetypes.best_match([PROBLEM_JSON, "application/json", "text/html"])
    return best == "text/html"


def _html(body: Mapping[str, Any]) -> str:
    return _HTML_PAGE.format(
        status=body["status"],
        title=escape(body["title"]),
        detail=escape(str(body["detail"])),
        request_id=escape(body["request_id"]),
    )
