"""flask_resilience: a Flask extension that keeps Flask applications up."""

from __future__ import annotations

import logging

from .deadlines import query_timeout, request_timeout
from .decorators import log_errors, safe_route_handler
from .errors import (
    ConfigurationError,
    DatabaseUnavailable,
    ProblemError,
    RequestDeadlineExceeded,
    ResilienceWarning,
)
from .extension import Resilience
from .log import JsonFormatter, current_request_id
from .uploads import (
    InsufficientStorage,
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
    "DatabaseUnavailable",
    "InsufficientStorage",
    "JsonFormatter",
    "ProblemError",
    "RequestDeadlineExceeded",
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
    "current_request_id",
    "log_errors",
    "query_timeout",
    "request_timeout",
    "safe_route_handler",
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
