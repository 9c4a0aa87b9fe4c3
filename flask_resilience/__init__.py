"""flask_resilience: a Flask extension that keeps Flask applications up."""

from __future__ import annotations

import logging

from .access import permission_denied
from .bulkhead import BulkheadFull, bulkhead
from .circuit import CircuitOpen, circuit_breaker
from .deadlines import query_timeout, request_timeout
from .decorators import log_errors, safe_route_handler
from .degradation import graceful_degradation
from .errors import (
    ConfigurationError,
    DatabaseUnavailable,
    PermissionDenied,
    ProblemError,
    RateLimited,
    RequestDeadlineExceeded,
    ResilienceWarning,
    StartupCheckFailed,
    Unauthenticated,
)
from .extension import Resilience
from .log import JsonFormatter, current_request_id
from .permissions import (
    login_required,
    org_access_required,
    permission_required,
    role_required,
)
from .retry import retry_on_failure
from .sessions import rotate_session, session_required
from .shedding import Overloaded
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
    "Overloaded",
    "PermissionDenied",
    "ProblemError",
    "RateLimited",
    "RequestDeadlineExceeded",
    "Resilience",
    "ResilienceWarning",
    "StartupCheckFailed",
    "Unauthenticated",
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
    "login_required",
    "org_access_required",
    "permission_denied",
    "permission_required",
    "query_timeout",
    "request_timeout",
    "retry_on_failure",
    "role_required",
    "rotate_session",
    "safe_route_handler",
    "save_upload",
    "send_upload",
    "session_required",
    "validate_upload",
    "validate_uploaded_file_comprehensive",
    "validate_uploads",
    "validated_uploads",
]
__version__ = "0.1.0"

# The application decides where the extension's log records go.
logging.getLogger("flask_resilience").addHandler(logging.NullHandler())
