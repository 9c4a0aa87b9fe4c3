"""The headers that tie an outbound call to the request that makes it."""

from __future__ import annotations

from flask.globals import _cv_request

from ..config import DEFAULT_SETTINGS
from ..log import current_trace, request_state
from ..state import EXTENSION_KEY, ResilienceState
from ..tracecontext import TRACEPARENT


def outbound_headers() -> dict[str, str]:
    """The headers an outbound call of the current request carries: its request id
    (under ``RESILIENCE_REQUEST_ID_HEADER``, unless that is ``None``) and a
    ``traceparent`` whose parent is the request's span (the active OpenTelemetry
    span's, when there is one). Empty outside a request.
    """
    context = _cv_request.get(None)
    if context is None:
        return {}
    trace = current_trace()
    headers = {TRACEPARENT: trace.traceparent()} if trace is not None else {}
    resilience = context.app.extensions.get(EXTENSION_KEY)
    settings = resilience.settings if isinstance(resilience, ResilienceState) else DEFAULT_SETTINGS
    if settings.request_id_header is not None:
        headers[settings.request_id_header] = request_state().request_id
    return headers
