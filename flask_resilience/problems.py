"""RFC 9457 problem documents for every 4xx and 5xx answer.

One handler for ``HTTPException`` covers them all: Werkzeug's errors, the
extension's ``ProblemError`` subclasses and, through Flask's own path, unhandled
exceptions, which Flask turns into ``InternalServerError(original_exception=...)``
after it has fired ``got_request_exception`` and logged them. No handler is
registered for ``Exception``: that would hide errors from Flask's log and from
tools listening to that signal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, got_request_exception, request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.sansio.response import Response as ResponseBase

from . import log
from .database import classify_database_error
from .errors import ProblemError

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


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    got_request_exception.connect(_log_unhandled, app)


def handle_http_exception(error: HTTPException) -> ResponseBase:
    """Answer an HTTP error, or an unhandled exception Flask wrapped in a 500.

    An exception raised with a ready response (Werkzeug's ``response`` argument;
    Flask-Limiter's 429 with the problem document ``on_breach`` made) is answered
    with it, as Werkzeug's ``HTTPException.get_response`` would.
    """
    original = getattr(error, "original_exception", None)
    if isinstance(error, InternalServerError) and original is not None:
        error = classify_database_error(original) or error
    # An unhandled exception was logged when Flask signalled it; this is a no-op then.
    log.log_error(original or error, error.code or 500, message=_log_message(error, original))
    if error.response is not None:
        return error.response
    return problem_response(error, original)


def _log_unhandled(sender: Flask, exception: Exception, **_: Any) -> None:
    """Log an unhandled exception as Flask signals it, before Flask logs it itself.

    Logging here, with the status it will be answered with, lets the filter on
    ``app.logger`` drop Flask's own record of it: one record per error.
    """
    answer = classify_database_error(exception)
    if answer is None:
        log.log_error(exception, 500)
    else:
        log.log_error(exception, answer.code or 503, outage=True)


def problem_response(error: HTTPException, original: BaseException | None = None) -> Response:
    """The problem document for ``error``, as JSON or, for browsers, HTML."""
    status = error.code or 500
    body = problem_body(error, original)
    headers = {
        name: value for name, value in error.get_headers() if name.lower() not in _NO_BODY_HEADERS
    }
    if isinstance(error, ProblemError):
        headers.update(error.extra_headers)
    headers["Cache-Control"] = "no-store"
    if _wants_html():
        return Response(_html(body), status, headers, mimetype="text/html")
    return Response(json.dumps(body, default=str), status, headers, mimetype=PROBLEM_JSON)


def problem_body(error: HTTPException, original: BaseException | None = None) -> dict[str, Any]:
    status = error.code or 500
    body: dict[str, Any] = {
        "type": getattr(error, "problem_type", "about:blank"),
        "title": _title(status),
        "status": status,
        "detail": _detail(error, original),
        "instance": request.path,
        "request_id": log.request_state().request_id,
    }
    if isinstance(error, ProblemError):
        body.update(_safe_members(error.members))
    return body


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
    reserved = {"type", "title", "status", "instance", "request_id"}
    return {name: value for name, value in members.items() if name not in reserved}


def _log_message(error: HTTPException, original: BaseException | None) -> str:
    if original is not None:
        return f"{type(original).__name__} answered {error.code}"
    return f"{type(error).__name__}: {error.description}"


def _wants_html() -> bool:
    """Browsers get a page; API clients, and anything under an API prefix, get JSON."""
    forced = current_app.extensions["resilience"].config["RESILIENCE_ERROR_FORMAT"]
    if forced != "auto":
        return bool(forced == "html")
    prefixes = current_app.extensions["resilience"].config["RESILIENCE_API_PREFIXES"]
    if any(request.path.startswith(prefix) for prefix in prefixes):
        return False
    best = request.accept_mimetypes.best_match([PROBLEM_JSON, "application/json", "text/html"])
    return best == "text/html"


def _html(body: Mapping[str, Any]) -> str:
    return _HTML_PAGE.format(
        status=body["status"],
        title=escape(body["title"]),
        detail=escape(str(body["detail"])),
        request_id=escape(body["request_id"]),
    )
