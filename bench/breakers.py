"""Per-call overhead of the resilience decorators, in microseconds (informational).

Each figure is the median time of a call through the decorator minus that of the
same bare function, their rounds interleaved, in one app context (as in a
request), in-process. The breaker keeps its state in memory.
"""

from __future__ import annotations

from bench.core import hello_app
from bench.table import Row, compare
from flask_resilience import Resilience, bulkhead, circuit_breaker, retry_on_failure

REPEAT = 20_000
ROUNDS = 7
# A retried call that succeeds calls the function directly: no more than this.
TARGETS = {"retry_on_failure (no failure)": 3.0}


def _work(value: int = 1) -> int:
    return value + 1


def rows(scale: float = 1.0) -> list[Row]:
    app = hello_app()
    Resilience(app)
    calls = {
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
        target = TARGETS.get(label)
        met = target is None or micro <= target
        shown = f"<= {target:g} us" if target else "-"
        rows.append(Row(f"{label} overhead per call", micro, "us", shown, met))
    return rows
