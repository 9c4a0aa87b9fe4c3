"""httpx clients whose calls keep within the deadline and carry the request's ids.

``send`` is where every call of a client passes (``get``, ``request``, ``stream``),
so the subclasses below bound each request there: the headers are set when the
call did not set them, and each of the request's timeouts (``connect``, ``read``,
``write``, ``pool``, in ``request.extensions["timeout"]``, which httpx's
transports read) is cut to the time left. A redirect's hops carry the same
headers and timeouts. A body read from a streamed answer after ``send`` returned
is not watched.
"""

from __future__ import annotations

from typing import Any

import httpx

from .bounds import deadline_fired, default_timeout, narrow, out_of_time, time_left_for_a_call
from .headers import outbound_headers

_TIMEOUTS = ("connect", "read", "write", "pool")


def _bound(client: httpx.Client | httpx.AsyncClient, request: httpx.Request) -> bool:
    """Set ``request``'s headers and timeouts; whether the deadline made one shorter.

    :raises RequestDeadlineExceeded: no time is left.
    """
    for name, value in outbound_headers().items():
        if name not in request.headers:
            request.headers[name] = value
    left = time_left_for_a_call()
    given: dict[str, float | None] = request.extensions.get("timeout") or client.timeout.as_dict()
    default = default_timeout()
    own = {name: narrow(given.get(name), default, None) for name in _TIMEOUTS}
    bounded = {name: narrow(seconds, default, left) for name, seconds in own.items()}
    request.extensions = {**request.extensions, "timeout": bounded}
    return bounded != own


class _Client(httpx.Client):
    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        narrowed = _bound(self, request)
        try:
            return super().send(request, **kwargs)
        except httpx.TimeoutException as error:
            if deadline_fired(narrowed):
                raise out_of_time() from error
            raise


class _AsyncClient(httpx.AsyncClient):
    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        narrowed = _bound(self, request)
        try:
            return await super().send(request, **kwargs)
        except httpx.TimeoutException as error:
            if deadline_fired(narrowed):
                raise out_of_time() from error
            raise


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    # No timeout: every one is None, which each call replaces by the app's default.
    return {"timeout": None, **kwargs}


def make_client(kwargs: dict[str, Any]) -> httpx.Client:
    return _Client(**_options(kwargs))


def make_async_client(kwargs: dict[str, Any]) -> httpx.AsyncClient:
    return _AsyncClient(**_options(kwargs))
