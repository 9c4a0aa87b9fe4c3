"""Per-request cost of rate limiting (memory storage) on a hello-world view.

Every contender counts the same limit, high enough never to be reached, so the
figures compare the bookkeeping: flask_resilience (core + limits) against bare
Flask and against Flask-Limiter alone.
"""

from __future__ import annotations

import logging
import warnings

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from bench.core import hello_app, wsgi_caller
from bench.table import Row, compare
from flask_resilience import Resilience

ROUNDS = 15
REPEAT = 2000
LIMIT = "1000000000 per hour"


def rows() -> list[Row]:
    logging.getLogger("flask_resilience").setLevel(logging.WARNING)
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)

    resilient = hello_app(RATELIMIT_DEFAULT=LIMIT)
    Resilience(resilient)
    limited = hello_app(
        RATELIMIT_DEFAULT=LIMIT, RATELIMIT_STORAGE_URI="memory://", RATELIMIT_HEADERS_ENABLED=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Limiter(get_remote_address, app=limited)

    calls = {
        "bare": wsgi_caller(hello_app()),
        "limiter": wsgi_caller(limited),
        "resilience": wsgi_caller(resilient),
    }
    for call in calls.values():
        call()  # warm up
    seconds = compare(calls, repeat=REPEAT, rounds=ROUNDS)
    against_bare = seconds["resilience"] / seconds["bare"]
    against_limiter = seconds["resilience"] / seconds["limiter"]
    limiter_against_bare = seconds["limiter"] / seconds["bare"]
    return [
        Row("hello world, Flask-Limiter alone", seconds["limiter"] * 1e6, "us", "-", True),
        Row("hello world, flask_resilience + limits", seconds["resilience"] * 1e6, "us", "-", True),
        Row("Flask-Limiter alone / bare", limiter_against_bare, "x", "-", True),
        Row("resilience + limits / bare", against_bare, "x", "-", True),
        Row("resilience + limits / Flask-Limiter", against_limiter, "x", "info", True),
    ]
