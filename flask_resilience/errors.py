"""Exception and warning classes raised by flask_resilience."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

from werkzeug.exceptions import (
    Forbidden,
    GatewayTimeout,
    HTTPException,
    ServiceUnavailable,
    TooManyRequests,
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

    Its ``type`` is ``RESILIENCE_PROBLEM_TYPE_BASE`` followed by the class's
    ``kind`` (``urn:flask-resilience:problem:rate-limited``), or the class's own
    absolute ``problem_type`` URI; a class with neither is ``about:blank``, which
    RFC 9457 keeps for problems that say no more than their status.

    :param detail: the problem's ``detail``: safe to show to the client.
    :param headers: extra response headers, such as ``Retry-After``.
    :param members: extra members of the problem document, such as ``errors``.
    """

    kind: ClassVar[str | None] = None
    """The problem's name under ``RESILIENCE_PROBLEM_TYPE_BASE``; docs/problems.md lists them."""
    problem_type: ClassVar[str | None] = None
    """An absolute ``type`` URI of the class's own, which wins over ``kind``."""

    def __init__(
        self, detail: str | None = None, *, headers: Mapping[str, str] | None = None, **members: Any
    ) -> None:
        super().__init__(description=detail)
        self.extra_headers = dict(headers or {})
        self.members = members


class DatabaseUnavailable(ProblemError, ServiceUnavailable):
    """The database could not be reached, or no pooled connection came free in time.

    ``dependency`` says which: ``"database"``, or ``"pool"`` for no free connection.
    """

    kind = "dependency-unavailable"

    def __init__(
        self,
        detail: str | None = None,
        *,
        dependency: str = "database",
        headers: Mapping[str, str] | None = None,
        **members: Any,
    ) -> None:
        super().__init__(detail, headers=headers, **members)
        self.dependency = dependency


class RequestDeadlineExceeded(ProblemError, GatewayTimeout):
    """The request ran out of its time budget (``RESILIENCE_REQUEST_TIMEOUT``).

    ``where`` says what was cut short: ``"database"`` (a statement), ``"outbound"``
    (a call), ``"interrupted"`` (the request itself) or ``"request"``.
    """

    kind = "deadline-exceeded"

    def __init__(
        self,
        detail: str | None = None,
        *,
        where: str = "request",
        headers: Mapping[str, str] | None = None,
        **members: Any,
    ) -> None:
        super().__init__(detail, headers=headers, **members)
        self.where = where


class Unauthenticated(ProblemError, Unauthorized):
    """The request needs an authenticated user (or a session) it does not have: 401.

    Its ``reason`` member says why: ``login-required``, ``session-expired`` or
    ``session-required``.
    """

    kind = "unauthenticated"


class PermissionDenied(ProblemError, Forbidden):
    """The user is authenticated but not allowed to do this: 403.

    Its ``reason`` member names the guard: ``permission``, ``role`` or ``organization``.
    """

    kind = "permission-denied"


class RateLimited(ProblemError, TooManyRequests):
    """The body of a 429: the client went over a rate limit.

    Flask-Limiter raises its own ``RateLimitExceeded`` (so ``app.errorhandler(429)``
    and ``app.errorhandler(RateLimitExceeded)`` keep working); this class only
    renders the answer it carries: the ``limit`` member and ``Retry-After``.
    """

    kind = "rate-limited"


class StartupCheckFailed(RuntimeError):
    """A required startup check failed (``RESILIENCE_VALIDATE_ON_STARTUP``).

    :param results: every check that ran, failed or not.
    """

    def __init__(self, message: str, results: list[Any]) -> None:
        super().__init__(message)
        self.results = results
