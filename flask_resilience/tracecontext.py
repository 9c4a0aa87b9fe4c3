"""W3C Trace Context: the trace a request belongs to, read and made here only.

A request's trace is, in this order:

1. the active OpenTelemetry span's, when the app uses opentelemetry-api (an
   instrumentation started a span for the request, continuing the caller's trace);
2. the trace of a valid incoming ``traceparent``, with a span id of the request's
   own (its parent is the caller's span);
3. a trace the request starts, whose id is the request id when that is 32
   lower-case hex digits (the extension's own ids are), so that one id finds the
   request in logs and in traces.

Its ids go on the request's log records (``trace_id``, ``span_id``), in its
problem bodies (``trace_id``) and, as a ``traceparent`` whose parent is the
request's span, on its outbound calls. opentelemetry is never imported here: an
app that uses it has imported it by the time it serves requests, and an app that
does not pays nothing for it.

See https://www.w3.org/TR/trace-context/ for the header's format.
"""

from __future__ import annotations

import random
import re
import sys
from dataclasses import dataclass
from typing import Any

from . import signals

TRACEPARENT = "traceparent"
ENVIRON_TRACEPARENT = "HTTP_TRACEPARENT"
SAMPLED = "01"
_VERSION = "00"
# version-trace_id-parent_id-flags, lower-case hex; a later version may append fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
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
    """The trace and span a request is in: what its records show and its calls carry on."""

    trace_id: str
    span_id: str
    flags: str = SAMPLED

    def traceparent(self) -> str:
        """The ``traceparent`` of a call made from this span."""
        return f"{_VERSION}-{self.trace_id}-{self.span_id}-{self.flags}"


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


def incoming_trace_id(environ: dict[str, object]) -> str | None:
    """The trace id of the request's valid ``traceparent``, if it came with one."""
    header = environ.get(ENVIRON_TRACEPARENT)
    parent = parse_traceparent(header) if isinstance(header, str) else None
    return None if parent is None else parent.trace_id


def request_trace(environ: dict[str, object], request_id: str) -> Trace:
    """The trace of a request that no OpenTelemetry span covers (cases 2 and 3 above)."""
    header = environ.get(ENVIRON_TRACEPARENT)
    parent = parse_traceparent(header) if isinstance(header, str) else None
    if parent is not None:
        return Trace(parent.trace_id, new_span_id(), parent.flags)
    usable = _TRACE_ID.fullmatch(request_id) and request_id != _ZERO_TRACE
    return Trace(request_id if usable else new_trace_id(), new_span_id())


def active_span_trace() -> Trace | None:
    """The ids of the current OpenTelemetry span, when the app uses OpenTelemetry and
    one is active; ``None`` otherwise."""
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return None
    context = otel.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return Trace(
        f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{context.trace_flags:02x}"
    )


def add_span_event(name: str, attributes: dict[str, Any]) -> None:
    """An event on the current OpenTelemetry span, when one is recording."""
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return
    span = otel.get_current_span()
    if span.is_recording():
        span.add_event(name, {key: _attribute(value) for key, value in attributes.items()})


def _attribute(value: Any) -> str | bool | int | float:
    return value if isinstance(value, str | bool | int | float) else str(value)


# What the extension did, as events on the span of the request it did it in.
_SPAN_EVENTS = {
    signals.call_retried: "resilience.retry",
    signals.retry_budget_exhausted: "resilience.retry_budget_exhausted",
    signals.breaker_state_changed: "resilience.breaker_state_changed",
    signals.dependency_unavailable: "resilience.dependency_unavailable",
    signals.bulkhead_rejected: "resilience.bulkhead_rejected",
    signals.request_shed: "resilience.request_shed",
    signals.deadline_exceeded: "resilience.deadline_exceeded",
    signals.rate_limited: "resilience.rate_limited",
}
_receivers: list[Any] = []


def record_span_events() -> None:
    """Add an event to the active OpenTelemetry span for each signal; once per process.

    Without OpenTelemetry in the app a receiver returns at once, and the signals
    are sent only when something happened: a request that goes well sends none.
    """
    if _receivers:
        return
    for signal, name in _SPAN_EVENTS.items():

        def receiver(_sender: Any, _event: str = name, **data: Any) -> None:
            add_span_event(_event, data)

        _receivers.append(receiver)  # the signal holds it weakly
        signal.connect(receiver)
