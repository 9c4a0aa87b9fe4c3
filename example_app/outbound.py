"""The call to the outbound service: one dependency that can be slow or down."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from flask_resilience import circuit_breaker, retry_on_failure
from flask_resilience.outbound import Session

EXCERPT_BYTES = 200
USER_AGENT = "example-documents/1.0"

# One session for the process, so that calls reuse their connections. Each call is
# bounded by its timeout and by the time left before the request's deadline (a 504
# when that runs out first), and carries the request's X-Request-ID and traceparent.
_session = Session()
_session.headers["User-Agent"] = USER_AGENT


class OutboundError(Exception):
    """The outbound service failed: unreachable, too slow, or it answered with an error.

    :param upstream_status: the status it answered with, if it answered at all.
    """

    def __init__(self, message: str, upstream_status: int | None = None) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status


@dataclass(frozen=True)
class OutboundResponse:
    url: str
    status: int
    content_type: str | None
    excerpt: str
    elapsed_ms: float


def fetch(url: str, timeout: float) -> OutboundResponse:
    """GET ``url`` and keep the start of the body.

    ``timeout`` bounds connecting and each read: without it a hung service would
    hold a worker forever, and gunicorn has only a few.
    :raises OutboundError: for every kind of failure, so callers handle one type.
    :raises RequestDeadlineExceeded: the request's deadline came first (a 504).
    """
    started = time.perf_counter()
    try:
        with _session.get(url, timeout=timeout, stream=True) as response:
            if response.status_code >= 400:
                raise OutboundError(
                    f"answered {response.status_code} {response.reason}", response.status_code
                )
            body = next(response.iter_content(EXCERPT_BYTES), b"")
            content_type = response.headers.get("Content-Type", "").partition(";")[0].strip()
    except requests.Timeout as error:
        raise OutboundError(f"did not answer within {timeout:g} s") from error
    except requests.ConnectionError as error:
        raise OutboundError(f"is unreachable: {_reason(error)}") from error
    except requests.RequestException as error:  # a garbled answer
        raise OutboundError(f"failed: {error!r}") from error
    return OutboundResponse(
        url=url,
        status=response.status_code,
        content_type=content_type or None,
        excerpt=body.decode("utf-8", errors="replace"),
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
    )


def _reason(error: requests.ConnectionError) -> str:
    """The innermost cause of a connection failure (``[Errno 111] Connection refused``)."""
    cause: BaseException = error
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return str(cause) or type(cause).__name__


@circuit_breaker("outbound", fail_max=5, reset_timeout=30)
@retry_on_failure(max_retries=2, delay=0.2, max_delay=1.0, exceptions=(OutboundError,))
def fetch_guarded(url: str, timeout: float) -> OutboundResponse:
    """``fetch`` retried twice on failure, behind a breaker.

    A blip costs a retry; a service that stays down opens the breaker after five
    failed calls, and for 30 s calls are refused at once (503 with Retry-After)
    instead of each holding a worker for the whole timeout.
    """
    return fetch(url, timeout)
