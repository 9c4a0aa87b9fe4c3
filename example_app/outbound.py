"""The call to the outbound service: one dependency that can be slow or down."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from flask_resilience import circuit_breaker, retry_on_failure

EXCERPT_BYTES = 200
USER_AGENT = "example-documents/1.0"


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
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read(EXCERPT_BYTES)
            status: int = response.status
            content_type = response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        error.close()  # it holds the response body open
        raise OutboundError(f"answered {error.code} {error.reason}", error.code) from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise OutboundError(f"did not answer within {timeout:g} s") from error
        raise OutboundError(f"is unreachable: {error.reason}") from error
    except TimeoutError as error:  # a timeout while reading is not wrapped in URLError
        raise OutboundError(f"did not answer within {timeout:g} s") from error
    except (OSError, http.client.HTTPException) as error:  # a dropped or garbled answer
        raise OutboundError(f"failed: {error!r}") from error
    return OutboundResponse(
        url=url,
        status=status,
        content_type=content_type,
        excerpt=body.decode("utf-8", errors="replace"),
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
    )


@circuit_breaker("outbound", fail_max=5, reset_timeout=30)
@retry_on_failure(max_retries=2, delay=0.2, max_delay=1.0, exceptions=(OutboundError,))
def fetch_guarded(url: str, timeout: float) -> OutboundResponse:
    """``fetch`` retried twice on failure, behind a breaker.

    A blip costs a retry; a service that stays down opens the breaker after five
    failed calls, and for 30 s calls are refused at once (503 with Retry-After)
    instead of each holding a worker for the whole timeout.
    """
    return fetch(url, timeout)
