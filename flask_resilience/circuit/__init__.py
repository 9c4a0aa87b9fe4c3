"""``@circuit_breaker``: stop calling a dependency that keeps failing or is slow.

Why the state machine is the package's own
    It was built on pybreaker, whose model is a count of consecutive failures
    kept in a storage with private hooks. Failure-rate windows, slow calls,
    several trial calls that must all succeed, and states an operator forces do
    not fit that model; bending it meant overriding pybreaker's private
    methods, which any release could change. The states and option names follow
    resilience4j's (see docs/decorators.md for the mapping).

Where breakers live
    A breaker guards a dependency (a payment API, a search cluster), not an app,
    so the decorator only records a *definition* in a registry keyed by name;
    every function decorated with the same name shares one breaker. The live
    breaker is made on first use: one per app that ``Resilience`` was set up on
    (``Resilience.breaker(name)``, listed by ``Resilience.circuit_breakers()``),
    and one per process for code that runs outside an app context.

Where state lives
    In memory by default (:mod:`.breaker`), so each worker process trips on its
    own. With ``RESILIENCE_CIRCUIT_STORAGE_URI = "redis://..."`` the state and
    its transitions are shared by every worker and instance while each keeps
    its own window of calls (:mod:`.shared`).
"""

from __future__ import annotations

from .breaker import (
    CLOSED,
    FORCED_CLOSED,
    FORCED_OPEN,
    HALF_OPEN,
    OPEN,
    STATES,
    Breaker,
    CircuitOpen,
)
from .calls import circuit_breaker
from .registry import (
    ACTIONS,
    BreakerNotShared,
    Breakers,
    breaker_states,
    control,
    defined_names,
    get_breaker,
    init_app,
)
from .shared import REDIS_KEY_PREFIX, SharedBreaker

__all__ = [
    "ACTIONS",
    "CLOSED",
    "FORCED_CLOSED",
    "FORCED_OPEN",
    "HALF_OPEN",
    "OPEN",
    "REDIS_KEY_PREFIX",
    "STATES",
    "Breaker",
    "BreakerNotShared",
    "Breakers",
    "CircuitOpen",
    "SharedBreaker",
    "breaker_states",
    "circuit_breaker",
    "control",
    "defined_names",
    "get_breaker",
    "init_app",
]
