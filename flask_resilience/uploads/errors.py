"""Why an upload was refused, and the HTTP errors that carry the reasons.

Each error is a problem+json with an ``errors`` list; every entry names one file:
``{"field", "filename", "code", "detail"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from ..errors import ProblemError


class InsufficientStorage(HTTPException):
    """507 Insufficient Storage (RFC 4918), which Werkzeug has no class for.

    Flask's ``app.errorhandler(507)`` does not know the number; register a handler
    with the class: ``app.errorhandler(InsufficientStorage)``.
    """

    code = 507
    description = "The server has no room left to store the request's data."


class UploadInvalid(ProblemError, BadRequest):
    """400: a file is missing, empty, badly named, or the multipart body is malformed."""

    kind = "upload-invalid"


class UploadTooLarge(ProblemError, RequestEntityTooLarge):
    """413: a file is larger than its policy allows."""

    kind = "upload-too-large"


class UploadTypeNotAllowed(ProblemError, UnsupportedMediaType):
    """415: a file's extension or content is not allowed, or the two disagree."""

    kind = "upload-type-not-allowed"


class UploadStorageFull(ProblemError, InsufficientStorage):
    """507: the disk (or the quota) is full; nothing was kept."""

    kind = "upload-storage-full"


class UploadNotStored(ProblemError, InternalServerError):
    """500: the file could not be written (permissions, read-only disk...); nothing was kept."""

    kind = "upload-not-stored"


STATUS_ERRORS: dict[int, type[ProblemError]] = {
    400: UploadInvalid,
    413: UploadTooLarge,
    415: UploadTypeNotAllowed,
}


@dataclass(frozen=True)
class UploadFailure:
    """Why an upload was refused. ``code`` is stable, ``message`` is safe to show."""

    code: str
    message: str
    status: int
    """400 (missing or malformed), 413 (too large) or 415 (type not allowed)."""


def problem_for(failures: list[dict[str, Any]]) -> ProblemError:
    """The HTTP error for refused uploads: 413 before 415 before 400."""
    statuses = {entry["status"] for entry in failures}
    status = 413 if 413 in statuses else 415 if 415 in statuses else 400
    if len(failures) == 1:
        detail = failures[0]["detail"]
    else:
        detail = f"{len(failures)} uploads were refused."
    errors = [{key: value for key, value in entry.items() if key != "status"} for entry in failures]
    return STATUS_ERRORS[status](detail, errors=errors)


def failure_entry(
    field_name: str | None, file: FileStorage | None, failure: UploadFailure
) -> dict[str, Any]:
    filename = file.filename if file is not None else None
    return {
        "field": field_name,
        "filename": filename[:255] if filename else filename,
        "code": failure.code,
        "detail": failure.message,
        "status": failure.status,
    }
