"""Smoke runs of the harnesses (the suite's ``harness_smoke``) and of the benchmarks."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Each smoke run loads a whole stack on the machine's cores and judges its own
    # latency: when the suite runs in several processes, one of them runs them all,
    # one after the other, so that no smoke run is judged under another's load.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.xdist_group("harnesses"))
