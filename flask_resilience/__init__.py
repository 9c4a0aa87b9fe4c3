"""flask_resilience: a Flask extension that keeps Flask applications up."""

from __future__ import annotations

import logging

from .errors import ConfigurationError, ProblemError, ResilienceWarning
from .extension import Resilience

__all__ = ["ConfigurationError", "ProblemError", "Resilience", "ResilienceWarning"]
__version__ = "0.1.0"

# The application decides where the extension's log records go.
logging.getLogger("flask_resilience").addHandler(logging.NullHandler())
