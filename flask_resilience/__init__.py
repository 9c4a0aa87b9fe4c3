"""flask_resilience: a Flask extension that keeps Flask applications up."""

from __future__ import annotations

import logging

from .errors import ConfigurationError, ProblemError, ResilienceWarning
from .extension import Resilience
from .uploads import (
    UploadCheck,
    UploadFailure,
    UploadInfo,
    UploadInvalid,
    UploadNotStored,
    UploadPolicy,
    UploadStorageFull,
    UploadTooLarge,
    UploadTypeNotAllowed,
    save_upload,
    send_upload,
    validate_upload,
    validate_uploaded_file_comprehensive,
    validate_uploads,
    validated_uploads,
)

__all__ = [
    "ConfigurationError",
    "ProblemError",
    "Resilience",
    "ResilienceWarning",
    "UploadCheck",
    "UploadFailure",
    "UploadInfo",
    "UploadInvalid",
    "UploadNotStored",
    "UploadPolicy",
    "UploadStorageFull",
    "UploadTooLarge",
    "UploadTypeNotAllowed",
    "save_upload",
    "send_upload",
    "validate_upload",
    "validate_uploaded_file_comprehensive",
    "validate_uploads",
    "validated_uploads",
]
__version__ = "0.1.0"

# The application decides where the extension's log records go.
logging.getLogger("flask_resilience").addHandler(logging.NullHandler())
