"""Upload validation that holds against hostile files.

A file passes when its sanitized extension is allowed, the type libmagic detects in
its content belongs to that extension, and it is neither active content nor of the
wrong size. :func:`check_upload` checks one file, ``@validate_uploads`` a request,
:func:`save_upload` stores an accepted file and :func:`send_upload` serves it back.
"""

from __future__ import annotations

from flask import Flask

from ..config import Settings, wrong_value
from .categories import CATEGORIES, EXTENSION_TYPES
from .decorators import upload_checks, validate_uploads
from .errors import (
    InsufficientStorage,
    UploadFailure,
    UploadInvalid,
    UploadNotStored,
    UploadStorageFull,
    UploadTooLarge,
    UploadTypeNotAllowed,
)
from .policy import UploadPolicy
from .sniffing import check_libmagic
from .storage import save_upload, send_upload
from .validation import (
    UploadCheck,
    UploadInfo,
    check_upload,
    validate_uploaded_file_comprehensive,
)

__all__ = [
    "CATEGORIES",
    "EXTENSION_TYPES",
    "InsufficientStorage",
    "UploadCheck",
    "UploadFailure",
    "UploadInfo",
    "UploadInvalid",
    "UploadNotStored",
    "UploadPolicy",
    "UploadStorageFull",
    "UploadTooLarge",
    "UploadTypeNotAllowed",
    "check_upload",
    "init_app",
    "save_upload",
    "send_upload",
    "upload_checks",
    "validate_uploaded_file_comprehensive",
    "validate_uploads",
]


def init_app(app: Flask, settings: Settings) -> None:
    """Check the upload settings and that libmagic works, failing closed if not.

    :raises ConfigurationError: an unknown category, or libmagic missing.
    """
    categories = settings.upload_categories
    if not categories or any(category not in CATEGORIES for category in categories):
        raise wrong_value(
            "RESILIENCE_UPLOAD_CATEGORIES",
            list(categories),
            "a non-empty list of: " + ", ".join(CATEGORIES),
        )
    check_libmagic()
