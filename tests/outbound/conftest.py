"""Fixtures of the outbound call tests: the local service they call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from .upstream import UpstreamServer, upstream_server


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with upstream_server() as server:
        yield server


@pytest.fixture
def closing() -> Iterator[ExitStack]:
    """Closes what the test hands it (sessions, clients) when the test ends."""
    with ExitStack() as stack:
        yield stack
