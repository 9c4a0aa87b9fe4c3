"""Fixtures of the breaker and retry tests: the local service they call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.outbound.upstream import UpstreamServer, upstream_server


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with upstream_server() as server:
        yield server
