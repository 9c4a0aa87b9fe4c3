"""The HTTP errors an upload can end in, each a problem+json with an ``errors`` list.

Every entry of ``errors`` names one file: ``{"field", "filename", "code", "detail"}``.
"""

from __future__ import annotations

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


class UploadTooLarge(ProblemError, RequestEntityTooLarge):
    """413: a file is larger than its policy allows."""


class UploadTypeNotAllowed(ProblemError, UnsupportedMediaType):
    """415: a file's extension or content is not allowed, or the two disagree."""


class UploadStorageFull(ProblemError, InsufficientStorage):
    """507: the disk (or the quota) is full; nothing was kept."""


class UploadNotStored(ProblemError, InternalServerError):
    """500: the file could not be written (permissions, read-only disk...); nothing was kept."""


STATUS_ERRORS: dict[int, type[ProblemError]] = {
    400: UploadInvalid,
    413: UploadTooLarge,
    415: UploadTypeNotAllowed,
}
