"""W3C Trace Context (``traceparent``) for the calls a request makes to other services.

An outbound call carries ``traceparent: 00-<trace id>-<span id>-<flags>``: the trace
id is the incoming request's, when it came with a valid ``traceparent``, so that
the services it calls are seen in the same trace; otherwise one is made for the
request, once, and kept in its state. Each outbound call gets a span id of its own.
Only this module reads or makes trace context; a fuller trace context (spans of
the app's own, ``tracestate``) is meant to grow here.

See https://www.w3.org/TR/trace-context/ for the header's format.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask.globals import _cv_request

from .config import DEFAULT_SETTINGS
from .log import ENVIRON_STATE, RequestState, request_state
from .state import EXTENSION_KEY, ResilienceState

if TYPE_CHECKING:
    from flask import Request

TRACEPARENT = "traceparent"
SAMPLED = "01"
_VERSION = "00"
# version-trace_id-parent_id-flags, lower-case hex; a later version may append fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True)
class TraceParent:
    """One ``traceparent`` header's fields."""

    trace_id: str
    parent_id: str
    flags: str

    def header(self) -> str:
        return f"{_VERSION}-{self.trace_id}-{self.parent_id}-{self.flags}"


@dataclass(frozen=True)
class Trace:
    """The trace the current request belongs to: what its outbound calls carry on."""

    trace_id: str
    flags: str


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The fields of a valid ``traceparent``, or ``None`` for anything else.

    Invalid by the W3C rules: version ``ff``, upper-case hex, an all-zero trace or
    parent id, and a version ``00`` header with anything after its flags. A later
    version's extra fields are ignored, as the specification asks.
    """
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == _VERSION and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, parent_id, flags)


def new_trace_id() -> str:
    """32 random hex digits, never all zero (not a secret: ``random`` is enough)."""
    return f"{random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    """16 random hex digits, never all zero."""
    return f"{random.getrandbits(64) or 1:016x}"


def current_trace() -> Trace | None:
    """The current request's trace, worked out on first use; ``None`` outside a request."""
    context = _cv_request.get(None)
    return None if context is None else _trace_of(context.request, _state_of(context.request))


def _state_of(incoming: Request) -> RequestState:
    state: RequestState | None = incoming.environ.get(ENVIRON_STATE)
    return request_state() if state is None else state


def _trace_of(incoming: Request, state: RequestState) -> Trace:
    trace = state.trace
    if trace is None:
        parent = parse_traceparent(incoming.headers.get(TRACEPARENT))
        if parent is None:
            trace = state.trace = Trace(new_trace_id(), SAMPLED)
        else:
            trace = state.trace = Trace(parent.trace_id, parent.flags)
    return trace


def outbound_traceparent() -> str | None:
    """A ``traceparent`` for one outbound call of the current request (a fresh span id);
    ``None`` outside a request."""
    trace = current_trace()
    return None if trace is None else _traceparent(trace)


def _traceparent(trace: Trace) -> str:
    return f"{_VERSION}-{trace.trace_id}-{new_span_id()}-{trace.flags}"


def outbound_headers() -> dict[str, str]:
    """The headers an outbound call of the current request carries: its request id
    (under ``RESILIENCE_REQUEST_ID_HEADER``, unless that is ``None``) and a
    ``traceparent``. Empty outside a request.

    Read from Flask's context variable rather than through its proxies: every
    outbound call asks.
    """
    context = _cv_request.get(None)
    if context is None:
        return {}
    state = _state_of(context.request)
    headers = {TRACEPARENT: _traceparent(_trace_of(context.request, state))}
    resilience = context.app.extensions.get(EXTENSION_KEY)
    settings = resilience.settings if isinstance(resilience, ResilienceState) else DEFAULT_SETTINGS
    if settings.request_id_header is not None:
        headers[settings.request_id_header] = state.request_id
    return headers
