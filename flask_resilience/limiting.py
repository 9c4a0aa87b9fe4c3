"""Rate limits through Flask-Limiter, set up so that they fail open.

Flask-Limiter does the counting and reads its own ``RATELIMIT_*`` keys; nothing is
limited until the app says so (``RATELIMIT_APPLICATION = "100 per minute"``: per
client across the app; ``RATELIMIT_DEFAULT``: per client and per route;
``resilience.limit`` on a view). This module only fills in the keys the user left
unset, with the values a production app needs:

* ``X-RateLimit-*`` headers, and ``Retry-After`` on every 429 (and only there:
  Flask-Limiter would write it on every response, over a 503's own);
* storage errors swallowed, with the in-memory fallback on: while the storage
  (Redis) is down each process counts on its own instead of failing the request,
  and Flask-Limiter checks the storage again with exponential backoff;
* short socket timeouts for a Redis storage, so a Redis that stops answering
  costs a request one second, not redis-py's default of several;
* 429 answers as problem documents naming the limit that was hit.

The client is ``request.remote_addr``: the peer, or behind
``RESILIENCE_TRUSTED_PROXIES`` proxies the address they forwarded (Werkzeug's
ProxyFix). A forwarding header is never read otherwise: a client could send one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask, Response, request
from flask_limiter import Limiter, RequestLimit
from flask_limiter.constants import ConfigVars
from limits.storage import MemoryStorage, Storage
from werkzeug.middleware.proxy_fix import ProxyFix

from . import problems, server, signals
from .errors import RateLimited, warn
from .log import ExtensionLogger, hide_password
from .state import EXTENSION_KEY, HealthCheck, ResilienceState

logger = ExtensionLogger("limiting")

STORAGE_CHECK = "ratelimit:storage"
"""The key of the storage's health check in the health answers."""

STORAGE_TIMEOUT = 1.0
"""Seconds a Redis storage may take to connect or answer before the request moves on."""

_REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+unix", "valkey", "valkeys", "valkey+unix"})
_TIMEOUT_OPTIONS = ("socket_connect_timeout", "socket_timeout")

# With headers on, Flask-Limiter writes Retry-After on every response, replacing the
# one a 503 carries; it writes this name instead, which is dropped again. The 429s
# get theirs from answer_breach.
_SCRATCH_HEADER = "X-Resilience-Limiter-Retry-After"


def client_address() -> str:
    """The rate-limit key: the client's address (see the module's docstring)."""
    return request.remote_addr or "127.0.0.1"


def new_limiter() -> Limiter:
    """The Limiter an extension makes when the app does not bring its own."""
    return Limiter(client_address)


def trust_proxies(state: ResilienceState) -> None:
    """Read the client's address and scheme from ``RESILIENCE_TRUSTED_PROXIES`` proxies' headers."""
    count = state.settings.trusted_proxies
    if count:
        state.path.add_layer("proxies", partial(ProxyFix, x_for=count, x_proto=count))


@dataclass
class Limits:
    """The rate-limit part's state for one app: the limiter doing the counting."""

    limiter: Limiter


def init_app(app: Flask, state: ResilienceState, limiter: Limiter) -> None:
    """Fill in the fail-open defaults, initialise ``limiter`` and report on its storage.

    Flask-Limiter's check moves from the end of the app's ``before_request``
    functions to the extension's gate (see ``pipeline``): before the app's own
    hooks, whichever was set up first, so that a request answered 429 runs none
    of them.
    """
    trust_proxies(state)
    if limiter in app.extensions.get("limiter", ()):
        warn(
            "The Limiter was initialised on this app before flask_resilience, which could"
            " not fill in its defaults (fail open, Retry-After, problem+json 429s). Pass it"
            " uninitialised: Resilience(app, limiter=Limiter(key_func))."
        )
    else:
        headers = state.settings.ratelimit_headers
        fill_defaults(app.config, legacy_headers=headers != "ietf")
        limited = app.config.get(ConfigVars.ENABLED, True)
        scratch = app.config[ConfigVars.HEADER_RETRY_AFTER] == _SCRATCH_HEADER
        if scratch and limited:
            # Registered before Flask-Limiter's own hook, so it runs after it. Only
            # with limits on: a hook costs every request a few microseconds.
            app.after_request(_drop_scratch_header)
        if headers != "legacy" and limited:
            app.after_request(partial(add_ietf_headers, limiter))
        before = list(app.before_request_funcs.get(None, ()))
        limiter.init_app(app)
        _move_to_gate(app, state, limiter, before)
    state.add(Limits(limiter))
    if not limiter.enabled:
        return
    limiter.request_filter(partial(_is_under, state.settings.health_url_prefix.rstrip("/")))
    problem = shared_memory_problem(limiter.storage, server.worker_count())
    if problem and not state.settings.validate_on_startup:  # else the checks say it
        warn(problem)
    # A storage_uri given to the Limiter's constructor wins over the config, as in Flask-Limiter.
    uri = getattr(limiter, "_storage_uri", None) or app.config[ConfigVars.STORAGE_URI]
    state.detail_providers["rate_limit"] = partial(storage_status, limiter, hide_password(uri))
    state.add_cleanup(partial(close_storage, limiter), name="rate limit storage")
    # Not critical: limits fail open, so a storage that is down must not take the
    # app out of the load balancer. It warns while the limiter counts in memory.
    state.health_checks[STORAGE_CHECK] = HealthCheck(
        STORAGE_CHECK,
        partial(storage_health, limiter),
        critical=False,
        timeout=2.0,
        component_type="datastore",
    )


def limiter_of(app: Flask) -> Limiter | None:
    """The limiter of ``app``, ``None`` for an app without the extension."""
    state = app.extensions.get(EXTENSION_KEY)
    part = state.find(Limits) if isinstance(state, ResilienceState) else None
    return part.limiter if part is not None else None


def _move_to_gate(
    app: Flask, state: ResilienceState, limiter: Limiter, before: list[Callable[[], Any]]
) -> None:
    """Take the hooks ``limiter.init_app`` just added and run them in the gate instead."""
    functions = app.before_request_funcs.get(None, [])
    added = [function for function in functions if function not in before]
    app.before_request_funcs[None] = [function for function in functions if function in before]
    for gate in added:
        state.path.add_gate(_counting_outages(gate, limiter))


def _counting_outages(check: Callable[[], Any], limiter: Limiter) -> Callable[[], Any]:
    """Flask-Limiter's check, and a dependency unavailable counted for each request it
    counts in memory because the storage is down."""

    def check_limits() -> Any:
        answer = check()
        # Flask-Limiter has no public flag for "counting in memory until the storage is back".
        if getattr(limiter, "_storage_dead", False):
            signals.send(signals.dependency_unavailable, dependency="limiter storage")
        return answer

    return check_limits


def fill_defaults(config: dict[str, Any], *, legacy_headers: bool = True) -> None:
    defaults: Mapping[str, Any] = {
        ConfigVars.HEADERS_ENABLED: legacy_headers,
        ConfigVars.SWALLOW_ERRORS: True,
        ConfigVars.IN_MEMORY_FALLBACK_ENABLED: True,
        # Explicit, so that Flask-Limiter does not warn; ours warns when it matters.
        ConfigVars.STORAGE_URI: "memory://",
        ConfigVars.ON_BREACH: answer_breach,
        ConfigVars.ON_META_BREACH: answer_breach,
        ConfigVars.HEADER_RETRY_AFTER: _SCRATCH_HEADER,
    }
    for key, value in defaults.items():
        config.setdefault(key, value)
    _bound_redis_timeouts(config)


def _bound_redis_timeouts(config: dict[str, Any]) -> None:
    uri = urlsplit(str(config[ConfigVars.STORAGE_URI]))
    if uri.scheme not in _REDIS_SCHEMES:
        return
    options = dict(config.get(ConfigVars.STORAGE_OPTIONS) or {})
    in_uri = parse_qs(uri.query)
    for name in _TIMEOUT_OPTIONS:
        if name not in options and name not in in_uri:
            options[name] = STORAGE_TIMEOUT
    config[ConfigVars.STORAGE_OPTIONS] = options


def add_ietf_headers(limiter: Limiter, response: Response) -> Response:
    """``RateLimit-Policy`` and ``RateLimit`` of the limits that applied to the request.

    As draft-ietf-httpapi-ratelimit-headers defines them: each limit is an item
    named after it, with its quota ``q`` and window ``w`` (seconds) in the policy,
    and what is left of it ``r`` and the seconds until it resets ``t`` in
    ``RateLimit``.
    """
    try:
        applied = limiter.current_limits
    except Exception:  # no limit was counted for this request (exempt, storage down)
        return response
    if not applied:
        return response
    policies, states, now = [], [], time.time()
    for each in applied:
        name, window = _sf_string(str(each.limit)), each.limit.get_expiry()
        policies.append(f"{name};q={each.limit.amount};w={window}")
        # Flask-Limiter rounds the reset up to the next whole second: never past the window.
        reset = min(window, max(0, math.ceil(each.reset_at - now)))
        states.append(f"{name};r={max(0, each.remaining)};t={reset}")
    response.headers["RateLimit-Policy"] = ", ".join(policies)
    response.headers["RateLimit"] = ", ".join(states)
    return response


def _sf_string(text: str) -> str:
    """``text`` as a Structured Field string (RFC 9651): quoted, with ``\\`` and ``"`` escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _drop_scratch_header(response: Response) -> Response:
    response.headers.remove(_SCRATCH_HEADER)  # no KeyError raised and caught when absent
    return response


def _is_under(prefix: str) -> bool:
    path = request.path
    return path == prefix or path.startswith(prefix + "/")


def answer_breach(breached: RequestLimit) -> Response:
    """Flask-Limiter's ``on_breach`` callback: the 429 problem document to answer with.

    Flask-Limiter raises its ``RateLimitExceeded`` carrying this response, so
    ``app.errorhandler(429)`` still sees the exception it expects.
    """
    limit = str(breached.limit)
    signals.send(signals.rate_limited, limit=limit)
    retry_after = _seconds_until_reset(breached)
    error = RateLimited(
        f"Too many requests: the limit is {limit}. Try again in {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
        limit=limit,
    )
    return problems.problem_response(error)


def _seconds_until_reset(breached: RequestLimit) -> int:
    try:
        reset_at = breached.window.reset_time
    except Exception:  # the storage failed since the limit was counted: a whole window
        return int(breached.limit.get_expiry())
    return max(1, math.ceil(reset_at - time.time()))


LIMIT_KEYS = (
    ConfigVars.APPLICATION_LIMITS,
    ConfigVars.DEFAULT_LIMITS,
    ConfigVars.META_LIMITS,
)


def configured_limits(config: Mapping[str, Any]) -> list[str]:
    """The keys of the app-wide limits that are set (``RATELIMIT_APPLICATION``...)."""
    return [key for key in LIMIT_KEYS if config.get(key)]


def shared_memory_problem(storage: Storage, workers: int) -> str | None:
    """Why in-memory counters do not hold with ``workers`` processes, or ``None``."""
    if not isinstance(storage, MemoryStorage) or workers <= 1:
        return None
    return (
        f"Rate limits are counted in memory and {workers} worker processes serve this app:"
        f" each counts on its own, so a client gets {workers} times every limit. Share the"
        " counters with RATELIMIT_STORAGE_URI=redis://host:6379/0."
    )


def storage_status(limiter: Limiter, uri: str = "") -> dict[str, Any]:
    """The limiter's storage for ``/health/detailed``: degraded while it is unreachable."""
    reachable = limiter.storage.check()
    # Flask-Limiter has no public flag for "counting in memory until the storage is back".
    falling_back = bool(getattr(limiter, "_storage_dead", False))
    return {
        "status": "ok" if reachable and not falling_back else "degraded",
        "storage": uri,
        "reachable": reachable,
        "counting_in_memory_fallback": falling_back,
    }


def storage_health(limiter: Limiter) -> str:
    """The health check of the limiter's storage: ``"pass"``, or ``"warn"`` when degraded.

    A warning and never a failure: requests keep being served, limited per process.
    """
    return "pass" if storage_status(limiter)["status"] == "ok" else "warn"


def close_storage(limiter: Limiter) -> None:
    """Close the storage's client connections (a Redis connection pool), if it has any."""
    client = getattr(limiter.storage, "storage", None)
    close: Callable[[], object] | None = getattr(client, "close", None)
    if close is not None:
        close()
