"""flask_resilience: a Flask extension that keeps Flask applications up.

The top level holds the extension, the errors it answers with and the decorators.
Everything else lives in its capability's namespace: ``flask_resilience.uploads``
(checking, storing and serving files), ``flask_resilience.guards`` (sessions,
loaders, the ``access_refused`` signal), ``flask_resilience.health``,
``flask_resilience.log`` (request ids, JSON logs), ``flask_resilience.outbound``
(HTTP calls within the deadline), ``flask_resilience.gunicorn``,
``flask_resilience.signals`` (what the extension did, for metrics and the app).
"""

from __future__ import annotations

from .bulkheads import BulkheadFull, bulkhead
from .circuit import CircuitOpen, circuit_breaker
from .deadlines import query_timeout, remaining_time, request_timeout
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
from .guards import (
    authentication_required,
    org_access_required,
    permission_required,
    role_required,
    session_required,
)
from .retry import retry_on_failure
from .shedding import Overloaded
from .uploads import validate_uploads

__all__ = [
    "BulkheadFull",
    "CircuitOpen",
    "ConfigurationError",
    "DatabaseUnavailable",
    "Overloaded",
    "PermissionDenied",
    "ProblemError",
    "RateLimited",
    "RequestDeadlineExceeded",
    "Resilience",
    "ResilienceWarning",
    "StartupCheckFailed",
    "Unauthenticated",
    "authentication_required",
    "bulkhead",
    "circuit_breaker",
    "graceful_degradation",
    "log_errors",
    "org_access_required",
    "permission_required",
    "query_timeout",
    "remaining_time",
    "request_timeout",
    "retry_on_failure",
    "role_required",
    "safe_route_handler",
    "session_required",
    "validate_uploads",
]
__version__ = "0.1.0"
