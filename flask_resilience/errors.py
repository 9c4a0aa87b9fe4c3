"""Exception and warning classes raised by flask_resilience."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from typing import Any

from werkzeug.exceptions import (
    Forbidden,
    GatewayTimeout,
    HTTPException,
    ServiceUnavailable,
    Unauthorized,
)


class ConfigurationError(ValueError):
    """A configuration value is wrong; raised by ``init_app``, never at request time.

    The message names the key, the value found and what is expected.
    """


class ResilienceWarning(UserWarning):
    """A configuration that works but is probably not what was meant.

    Filter it like any warning category::

        warnings.filterwarnings("ignore", category=ResilienceWarning)
    """


def warn(message: str) -> None:
    """Warn with ``ResilienceWarning``, pointing at the first line outside this package.

    A fixed ``stacklevel`` would be right for one way into the extension only
    (``Resilience(app)`` and ``resilience.init_app(app)`` differ by a frame).
    """
    level = 2
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "flask_resilience"
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, ResilienceWarning, stacklevel=level)


class ProblemError(HTTPException):
    """An HTTP error that carries extra members for its problem+json body.

    Subclass it together with the Werkzeug exception of the status, so that
    ``app.errorhandler(status)`` still finds it::

        class UploadRejected(ProblemError, UnsupportedMediaType):
            pass

        raise UploadRejected("Not an image.", errors=[{"field": "file", ...}])

    :param detail: the problem's ``detail``: safe to show to the client.
    :param headers: extra response headers, such as ``Retry-After``.
    :param members: extra members of the problem document, such as ``errors``.
    """

    def __init__(
        self, detail: str | None = None, *, headers: Mapping[str, str] | None = None, **members: Any
    ) -> None:
        super().__init__(description=detail)
        self.extra_headers = dict(headers or {})
        self.members = members


class DatabaseUnavailable(ProblemError, ServiceUnavailable):
    """The database could not be reached, or no pooled connection came free in time."""


class RequestDeadlineExceeded(ProblemError, GatewayTimeout):
    """The request ran out of its time budget (``RESILIENCE_REQUEST_TIMEOUT``)."""


class Unauthenticated(ProblemError, Unauthorized):
    """The request needs an authenticated user (or a session) it does not have: 401.

    Its ``reason`` member says why: ``login-required``, ``session-expired`` or
    ``session-required``.
    """


class PermissionDenied(ProblemError, Forbidden):
    """The user is authenticated but not allowed to do this: 403.

    Its ``reason`` member names the guard: ``permission``, ``role`` or ``organization``.
    """
