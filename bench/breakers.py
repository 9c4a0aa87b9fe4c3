"""Per-call overhead of the resilience decorators, in microseconds; the breaker's has a target.

Each figure is the median time of a call through the decorator minus that of the
same bare function, their rounds interleaved, in one app context (as in a
request), in-process. The breaker keeps its state in memory and is closed, with
the default options: the path every call of a healthy dependency takes.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.core import hello_app
from bench.table import Row, compare
from flask_resilience import Resilience, bulkhead, circuit_breaker, retry_on_failure

REPEAT = 20_000
ROUNDS = 7
# Microseconds at most. A closed breaker in memory storage takes no lock and reads
# no clock: a lookup of the app's breaker and one append to its window per call. A
# retried call that succeeds calls the function directly.
LIMITS = {"circuit_breaker (memory)": 3.0, "retry_on_failure (no failure)": 3.0}


def _work(value: int = 1) -> int:
    return value + 1


def rows(scale: float = 1.0) -> list[Row]:
    app = hello_app()
    Resilience(app)
    calls: dict[str, Callable[[], object]] = {
        "bare": _work,
        "circuit_breaker (memory)": circuit_breaker("bench-breaker")(_work),
        "bulkhead": bulkhead(10, name="bench-bulkhead")(_work),
        "retry_on_failure (no failure)": retry_on_failure()(_work),
    }
    with app.app_context():
        seconds = compare(calls, repeat=REPEAT, rounds=ROUNDS, scale=scale)
    bare = seconds.pop("bare")
    rows = []
    for label, each in seconds.items():
        micro = max(0.0, each - bare) * 1e6
        limit = LIMITS.get(label)
        if limit is None:
            rows.append(Row(f"{label} overhead per call", micro, "us", "-", True))
        else:
            target = f"<= {limit:g} us"
            rows.append(Row(f"{label} overhead per call", micro, "us", target, micro <= limit))
    return rows
