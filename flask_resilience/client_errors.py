"""An endpoint where front ends report their own errors (``RESILIENCE_CLIENT_ERRORS_URL``).

The report is checked against a small schema by hand, so that a hostile body gets
a precise 400 problem answer, and logged with the request id and the user.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from .errors import ProblemError
from .log import ExtensionLogger, request_context, scrub
from .state import ResilienceState

logger = ExtensionLogger("client")

MAX_REPORT_BYTES = 16 * 1024
# field -> (type, required, longest string)
_SCHEMA: dict[str, tuple[type, bool, int]] = {
    "message": (str, True, 2000),
    "level": (str, False, 16),
    "stack": (str, False, 8000),
    "url": (str, False, 2000),
    "line": (int, False, 0),
    "column": (int, False, 0),
    "user_agent": (str, False, 500),
    "context": (dict, False, 0),
}
_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}


class InvalidClientReport(ProblemError, BadRequest):
    """The body is not a client error report."""

    kind = "client-report-invalid"


class ClientReportTooLarge(ProblemError, RequestEntityTooLarge):
    """The report is larger than the endpoint takes."""

    kind = "client-report-too-large"


def init_app(app: Flask, state: ResilienceState) -> None:
    """Mount the intake at ``RESILIENCE_CLIENT_ERRORS_URL``, when it is set."""
    url = state.settings.client_errors_url
    if url:
        app.add_url_rule(url, "resilience_client_errors", receive_client_error, methods=["POST"])


def receive_client_error() -> Response:
    if request.content_length is None or request.content_length > MAX_REPORT_BYTES:
        raise ClientReportTooLarge(
            f"A client error report is at most {MAX_REPORT_BYTES} bytes, with a Content-Length."
        )
    report = request.get_json(silent=True)
    if not isinstance(report, dict):
        raise InvalidClientReport(
            "Send a JSON object.", errors=[{"field": "", "message": "not a JSON object"}]
        )
    problems = _report_problems(report)
    if problems:
        raise InvalidClientReport("The report does not match the schema.", errors=problems)
    level = _LEVELS.get(report.get("level", "error"), logging.ERROR)
    logger.log(
        level,
        "Client error: %s [request_id=%s user_id=%s]",
        report["message"],
        request_context()["request_id"],
        request_context()["user_id"],
        extra={"client_report": scrub(report)},
    )
    return Response(status=204)


def _report_problems(report: dict[str, Any]) -> list[dict[str, str]]:
    problems = [
        {"field": name, "message": "unknown field"} for name in report if name not in _SCHEMA
    ]
    for name, (kind, required, longest) in _SCHEMA.items():
        if name not in report:
            if required:
                problems.append({"field": name, "message": "required"})
            continue
        value = report[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            problems.append({"field": name, "message": f"must be a {kind.__name__}"})
        elif isinstance(value, str) and len(value) > longest:
            problems.append({"field": name, "message": f"at most {longest} characters"})
        elif name == "level" and value not in _LEVELS:
            problems.append({"field": name, "message": "one of " + ", ".join(_LEVELS)})
    return problems
