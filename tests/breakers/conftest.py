"""The breaker, bulkhead, retry and degradation tests.

Their apps come from ``helpers.resilient_app`` (the decorators read their defaults
from its configuration), their failing dependencies from ``helpers.Flaky``, and
breaker and bulkhead names from ``helpers.unique``: those registries are per process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_resilience.circuit import Breakers
from flask_resilience.state import get_state
from tests.outbound.upstream import UpstreamServer, upstream_server

from ..support.servers import RedisServer, redis_unavailable_reason, skip_or_fail
from .circuit_helpers import app_with


@pytest.fixture
def shared_app() -> Iterator[Callable[..., Flask]]:
    """``shared_app(uri, **config)``: an app whose breakers keep their state in the Redis
    at ``uri``; its Redis client is closed when the test ends."""
    made: list[Flask] = []

    def make(uri: str, **config: Any) -> Flask:
        app = app_with(RESILIENCE_CIRCUIT_STORAGE_URI=uri, **config)
        made.append(app)
        return app

    yield make
    for app in made:
        link = get_state(app).get(Breakers).link
        assert link is not None
        link.client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test alone, without persistence unless the test saves."""
    reason = redis_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    """The local HTTP service the retry tests call."""
    with upstream_server() as server:
        yield server
