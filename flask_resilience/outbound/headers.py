"""The headers that tie an outbound call to the request that makes it."""

from __future__ import annotations

from flask.globals import _cv_request

from ..config import DEFAULT_SETTINGS
from ..log import state_of, trace_of
from ..state import EXTENSION_KEY, ResilienceState
from ..tracecontext import TRACEPARENT, active_span_trace


def outbound_headers() -> dict[str, str]:
    """The headers an outbound call of the current request carries: its request id
    (under ``RESILIENCE_REQUEST_ID_HEADER``, unless that is ``None``) and a
    ``traceparent`` whose parent is the request's span (the active OpenTelemetry
    span's, when there is one). Empty outside a request.
    """
    context = _cv_request.get(None)  # not the proxies: asked on every call
    if context is None:
        return {}
    environ = context.request.environ
    trace = active_span_trace() or trace_of(environ)
    headers = {TRACEPARENT: trace.traceparent()}
    resilience = context.app.extensions.get(EXTENSION_KEY)
    settings = resilience.settings if isinstance(resilience, ResilienceState) else DEFAULT_SETTINGS
    if settings.request_id_header is not None:
        headers[settings.request_id_header] = state_of(environ).request_id
    return headers
