"""Per-call overhead of the resilience decorators, in microseconds (informational).

Each figure is the median time of a call through the decorator minus that of the
same bare function, measured in one app context (as in a request), in-process.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from bench.table import Row, median_seconds
from flask_resilience import Resilience, bulkhead, circuit_breaker, retry_on_failure

REPEAT = 20_000
ROUNDS = 7


def _work(value: int = 1) -> int:
    return value + 1


def _overhead_us(wrapped: Callable[[], object], bare: Callable[[], object]) -> float:
    through = median_seconds(wrapped, repeat=REPEAT, rounds=ROUNDS)
    direct = median_seconds(bare, repeat=REPEAT, rounds=ROUNDS)
    return max(0.0, through - direct) * 1e6


def rows() -> list[Row]:
    app = Flask(__name__)
    Resilience(app)
    guarded = {
        "circuit_breaker (memory)": circuit_breaker("bench-breaker")(_work),
        "bulkhead": bulkhead(10, name="bench-bulkhead")(_work),
        "retry_on_failure (no failure)": retry_on_failure()(_work),
    }
    with app.app_context():
        return [
            Row(
                f"{label} overhead per call", _overhead_us(func, _work), "µs", "informational", True
            )
            for label, func in guarded.items()
        ]
