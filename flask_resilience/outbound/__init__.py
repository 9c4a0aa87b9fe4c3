"""Outbound HTTP calls that keep within the request's deadline and carry its ids.

::

    from flask_resilience.outbound import Session

    billing = Session()                       # a requests.Session

    @app.get("/invoices/<id>")
    def invoice(id):
        return billing.get(f"{BILLING}/invoices/{id}").json()

Every call made through :class:`Session` (requests) or the clients of
:func:`httpx_client` and :func:`async_httpx_client` (httpx):

* is bounded by the smaller of its own timeout (the call's ``timeout=``, else the
  session's or client's, else ``RESILIENCE_OUTBOUND_TIMEOUT``: no call is ever
  unbounded) and the time left before the current deadline;
* is refused with ``RequestDeadlineExceeded`` (a 504 in a view), before anything
  is sent, when no time is left; a timeout that fired because the deadline was
  the nearer bound is a ``RequestDeadlineExceeded`` too, the library's own
  timeout error as its cause. The call's own timeout stays the library's error;
* carries, in a request, the request's id (``RESILIENCE_REQUEST_ID_HEADER``) and
  a W3C ``traceparent`` (:mod:`flask_resilience.tracecontext`), unless the call
  set those headers itself.

requests and httpx are optional (the ``outbound`` extra): each is imported only
when its client is first used. Outside a request no header is added and the
default timeout still applies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .headers import outbound_headers

if TYPE_CHECKING:
    import httpx

    from .requests_session import Session

__all__ = ["Session", "async_httpx_client", "httpx_client", "outbound_headers"]


def httpx_client(**kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` whose calls keep within the deadline and carry the request's ids.

    Takes every argument of ``httpx.Client``. Without ``timeout=``, each timeout is
    ``RESILIENCE_OUTBOUND_TIMEOUT`` of the app at the time of the call (httpx's own
    default is 5 s); a ``None`` in a timeout the client or the call gives is
    replaced by it too.
    """
    from .httpx_clients import make_client

    return make_client(kwargs)


def async_httpx_client(**kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` like :func:`httpx_client`'s."""
    from .httpx_clients import make_async_client

    return make_async_client(kwargs)


def __getattr__(name: str) -> Any:
    # Session subclasses requests.Session: requests is imported on first use only.
    if name == "Session":
        from .requests_session import Session

        return Session
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
