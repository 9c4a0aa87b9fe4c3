"""A ``requests.Session`` whose calls keep within the deadline and carry the request's ids."""

from __future__ import annotations

from typing import Any

import requests
from urllib3.exceptions import ReadTimeoutError
from urllib3.util import Timeout as Urllib3Timeout

from .bounds import deadline_fired, default_timeout, narrow, out_of_time, time_left_for_a_call
from .headers import outbound_headers

TimeoutValue = float | tuple[float | None, float | None] | Urllib3Timeout | None


class Session(requests.Session):
    """A ``requests.Session`` bounded by the request's deadline (see :mod:`.outbound`).

    ::

        session = Session(timeout=5)
        session.get(url)                  # at most 5 s, and never past the deadline
        session.get(url, timeout=(1, 3))  # connect within 1 s, each read within 3 s

    :param timeout: the session's timeout for calls that give none: seconds, a
        ``(connect, read)`` tuple or a urllib3 ``Timeout``; ``None`` means
        ``RESILIENCE_OUTBOUND_TIMEOUT``.

    requests times each step (connecting, each read of the answer), not the whole
    call. When the deadline is the nearer bound, the call is given a urllib3
    ``Timeout`` whose ``total`` is the time left, so that connecting and waiting
    for the answer's headers together end by the deadline; each later read of the
    body is bounded by the time that was left, and a body read from a streamed
    answer (``stream=True``) after the call returned is not watched.
    """

    def __init__(self, *, timeout: TimeoutValue = None) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send ``request`` within its bounds (requests calls this for every hop)."""
        for name, value in outbound_headers().items():
            if name not in request.headers:
                request.headers[name] = value
        left = time_left_for_a_call()
        given = kwargs.get("timeout")
        timeout, narrowed = _bounded(self.timeout if given is None else given, left)
        kwargs["timeout"] = timeout
        try:
            return super().send(request, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as error:
            if _timed_out(error) and deadline_fired(narrowed):
                raise out_of_time() from error
            raise


def _bounded(given: TimeoutValue, left: float | None) -> tuple[TimeoutValue, bool]:
    """The timeout to send with, and whether the deadline made it shorter."""
    default = default_timeout()
    total: float | None = None
    if isinstance(given, Urllib3Timeout):
        connect, read, total = _parts(given)
    elif isinstance(given, tuple):
        connect, read = given
    else:
        connect = read = given
    own_connect, own_read = narrow(connect, default, None), narrow(read, default, None)
    if left is None or max(own_connect, own_read, total or 0) <= left:
        return (own_connect, own_read) if total is None else given, False
    return (
        Urllib3Timeout(
            connect=min(own_connect, left),
            read=min(own_read, left),
            total=left if total is None else min(total, left),
        ),
        True,
    )


def _parts(timeout: Urllib3Timeout) -> tuple[float | None, float | None, float | None]:
    def seconds(value: object) -> float | None:
        return value if isinstance(value, (int, float)) else None

    return seconds(timeout._connect), seconds(timeout._read), seconds(timeout.total)


def _timed_out(error: requests.RequestException) -> bool:
    """A timeout: connecting, waiting for the answer, or reading its body (which
    requests reports as a ``ConnectionError`` around urllib3's ``ReadTimeoutError``)."""
    if isinstance(error, requests.Timeout):
        return True
    return any(isinstance(arg, ReadTimeoutError) for arg in error.args)
