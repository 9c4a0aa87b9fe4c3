"""flask_resilience: a Flask extension that keeps Flask applications up."""

from __future__ import annotations

import logging

from .bulkhead import BulkheadFull, bulkhead
from .circuit import CircuitOpen, circuit_breaker
from .deadlines import query_timeout, request_timeout
from .decorators import log_errors, safe_route_handler
from .degradation import graceful_degradation
from .errors import (
    ConfigurationError,
    DatabaseUnavailable,
    ProblemError,
    RequestDeadlineExceeded,
    ResilienceWarning,
)
from .extension import Resilience
from .log import JsonFormatter, current_request_id
from .retry import retry_on_failure
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
    "BulkheadFull",
    "CircuitOpen",
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
    "bulkhead",
    "circuit_breaker",
    "current_request_id",
    "graceful_degradation",
    "log_errors",
    "query_timeout",
    "request_timeout",
    "retry_on_failure",
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
