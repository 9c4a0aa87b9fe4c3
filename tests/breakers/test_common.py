"""What every resilience decorator shares: wrapping, configuration keys, documentation."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from flask_resilience import (
    ConfigurationError,
    bulkhead,
    circuit_breaker,
    graceful_degradation,
    retry_on_failure,
)
from tests.breakers.helpers import resilient_app, unique
from tests.support.paths import DOCS

KEYS = {
    "RESILIENCE_CIRCUIT_STORAGE_URI",
    "RESILIENCE_CIRCUIT_FAIL_MAX",
    "RESILIENCE_CIRCUIT_RESET_TIMEOUT",
    "RESILIENCE_RETRY_MAX_RETRIES",
    "RESILIENCE_RETRY_DELAY",
    "RESILIENCE_RETRY_MAX_DELAY",
    "RESILIENCE_BULKHEAD_MAX_CONCURRENT",
}


def decorators() -> list[Callable[[Callable[..., Any]], Callable[..., Any]]]:
    return [
        graceful_degradation(fallback_value=None),
        retry_on_failure(max_retries=0),
        circuit_breaker(unique("wraps")),
        bulkhead(1),
    ]


@pytest.mark.parametrize("index", range(4))
def test_name_docstring_and_signature_are_kept(index: int) -> None:
    def fetch_user(user_id: int, *, fresh: bool = False) -> dict[str, int]:
        """Load a user."""
        return {"id": user_id}

    async def fetch_async(user_id: int) -> int:
        return user_id

    decorate = decorators()[index]
    wrapped = decorate(fetch_user)
    assert wrapped.__name__ == "fetch_user"
    assert wrapped.__doc__ == "Load a user."
    assert inspect.signature(wrapped) == inspect.signature(fetch_user)
    assert wrapped(7, fresh=True) == {"id": 7}

    wrapped_async = decorators()[index](fetch_async)
    assert inspect.iscoroutinefunction(wrapped_async)
    assert inspect.signature(wrapped_async) == inspect.signature(fetch_async)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RESILIENCE_CIRCUIT_STORAGE_URI", "memcached://localhost"),
        ("RESILIENCE_CIRCUIT_STORAGE_URI", 6379),
        ("RESILIENCE_CIRCUIT_FAIL_MAX", 0),
        ("RESILIENCE_CIRCUIT_RESET_TIMEOUT", -1),
        ("RESILIENCE_RETRY_MAX_RETRIES", 1.5),
        ("RESILIENCE_RETRY_DELAY", "1s"),
        ("RESILIENCE_RETRY_MAX_DELAY", float("nan")),
        ("RESILIENCE_BULKHEAD_MAX_CONCURRENT", 0),
    ],
)
def test_wrong_values_are_refused_at_init_app_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=key):
        resilient_app(**{key: value})


def test_good_values_are_accepted() -> None:
    app = resilient_app(
        RESILIENCE_CIRCUIT_STORAGE_URI="rediss://cache.internal:6380/2",
        RESILIENCE_RETRY_DELAY=0,
        RESILIENCE_CIRCUIT_RESET_TIMEOUT=0.5,
    )
    assert app.extensions["resilience"].settings.retry_delay == 0


def test_every_key_has_a_row_in_the_configuration_docs() -> None:
    text = (DOCS / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(RESILIENCE_[A-Z_]+)` \|", text, re.MULTILINE))
    assert documented >= KEYS
