"""flask_resilience: a Flask extension that keeps Flask applications up."""

from __future__ import annotations

import logging

from .access import permission_denied
from .deadlines import query_timeout, request_timeout
from .decorators import log_errors, safe_route_handler
from .errors import (
    ConfigurationError,
    DatabaseUnavailable,
    PermissionDenied,
    ProblemError,
    RequestDeadlineExceeded,
    ResilienceWarning,
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
from .sessions import rotate_session, session_required

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailable",
    "JsonFormatter",
    "PermissionDenied",
    "ProblemError",
    "RequestDeadlineExceeded",
    "Resilience",
    "ResilienceWarning",
    "Unauthenticated",
    "current_request_id",
    "log_errors",
    "login_required",
    "org_access_required",
    "permission_denied",
    "permission_required",
    "query_timeout",
    "request_timeout",
    "role_required",
    "rotate_session",
    "safe_route_handler",
    "session_required",
]
__version__ = "0.1.0"

# The application decides where the extension's log records go.
logging.getLogger("flask_resilience").addHandler(logging.NullHandler())
