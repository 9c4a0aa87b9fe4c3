"""The traceparent an incoming request brings, read by the W3C rules."""

from __future__ import annotations

import pytest

from flask_resilience.tracecontext import TraceParent, parse_traceparent

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_header_gives_its_fields() -> None:
    assert parse_traceparent(f" {VALID} ") == TraceParent(
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01"
    )
    parsed = parse_traceparent(VALID)
    assert parsed is not None
    assert parsed.header() == VALID


def test_a_later_version_may_carry_more_fields() -> None:
    later = "cc" + VALID[2:] + "-what-comes-next"
    assert parse_traceparent(later) == TraceParent(
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01"
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        VALID.upper(),
        "ff" + VALID[2:],  # the version that is never valid
        VALID + "-extra",  # version 00 has nothing after its flags
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # a digit short
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
    ],
)
def test_anything_else_is_no_trace(value: str | None) -> None:
    assert parse_traceparent(value) is None
