"""flask_resilience: a Flask extension that keeps Flask applications up."""

from __future__ import annotations

import logging

from .bulkhead import BulkheadFull, bulkhead
from .circuit import CircuitOpen, circuit_breaker
from .degradation import graceful_degradation
from .errors import ConfigurationError, ProblemError, ResilienceWarning
from .extension import Resilience
from .retry import retry_on_failure

__all__ = [
    "BulkheadFull",
    "CircuitOpen",
    "ConfigurationError",
    "ProblemError",
    "Resilience",
    "ResilienceWarning",
    "bulkhead",
    "circuit_breaker",
    "graceful_degradation",
    "retry_on_failure",
]
__version__ = "0.1.0"

# The application decides where the extension's log records go.
logging.getLogger("flask_resilience").addHandler(logging.NullHandler())
