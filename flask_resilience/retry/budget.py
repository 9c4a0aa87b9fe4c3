"""Retry budgets: retries of one name may be only a share of its calls.

A retry helps with a passing fault; while a service is down, every client
retrying makes it busier still (three retries are four times the load). The
budget keeps retries to a share of the traffic, as Finagle's ``RetryBudget`` and
gRPC's retry throttling do. Its model, for each name of ``retry_on_failure``:

* every call deposits one token; a retry withdraws one;
* over the last :data:`WINDOW` seconds, retries may be at most
  ``RESILIENCE_RETRY_BUDGET`` (a share, 0.2 by default) of the calls, plus
  ``RESILIENCE_RETRY_BUDGET_FLOOR`` retries per second (10, so 100 in a window)
  that a name may make whatever its calls, so that a quiet service still retries;
* what a window forgets is counted per second, so old calls and retries leave it
  a second at a time (a sliding window of ten one-second slots).

A retry the budget has no room for is not made: the error is raised at once,
and logged once per streak of refusals (a streak ends after a window without
one). ``RESILIENCE_RETRY_BUDGET = None`` turns budgets off.

With ``RESILIENCE_CIRCUIT_STORAGE_URI`` the budget is shared by every process:
each keeps counting its calls in memory and adds them to Redis once a second
(when the first call of a new second comes) and with each withdrawal, which is
one Lua script: add the pending calls, read the window, take a token if there is
room. A call that succeeds makes no round trip. While Redis is unreachable each
process decides on its own counts, and tries Redis again after 1 s, 2, 4 … 30 s.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any

from ..log import ExtensionLogger, hide_password

if TYPE_CHECKING:
    from redis import Redis

logger = ExtensionLogger("retry")

WINDOW = 10
"""Seconds of calls and retries a budget looks back on."""
_KEY_TTL = WINDOW + 5
_REDIS_TIMEOUT = 0.25  # seconds; a budget must not hold a failing call up for long
_RETRY_REDIS_AFTER = (1.0, 30.0)  # first and longest pause before trying Redis again

# KEYS: the window's per-second hashes, oldest first (the last is the current second).
# ARGV: share, reserve, TTL, then the calls to add to each key first.
_WITHDRAW = """
local share = tonumber(ARGV[1])
local reserve = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local calls, retries = 0, 0
for i, key in ipairs(KEYS) do
  local add = tonumber(ARGV[3 + i])
  if add > 0 then
    redis.call('HINCRBY', key, 'calls', add)
    redis.call('EXPIRE', key, ttl)
  end
  local counts = redis.call('HMGET', key, 'calls', 'retries')
  calls = calls + (tonumber(counts[1]) or 0)
  retries = retries + (tonumber(counts[2]) or 0)
end
if retries + 1 <= share * calls + reserve then
  redis.call('HINCRBY', KEYS[#KEYS], 'retries', 1)
  redis.call('EXPIRE', KEYS[#KEYS], ttl)
  return 1
end
return 0
"""


class BudgetStore:
    """One app's Redis for retry budgets, and whether it is usable now."""

    def __init__(self, uri: str) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.uri = uri
        self.client: Redis = redis.Redis.from_url(
            uri,
            socket_timeout=_REDIS_TIMEOUT,
            socket_connect_timeout=_REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self.errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._withdraw = self.client.register_script(_WITHDRAW)
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._pause = 0.0

    @staticmethod
    def key(name: str, second: int) -> str:
        # The braces keep a name's keys in one slot of a Redis Cluster.
        return f"flask_resilience:retry_budget:{{{name}}}:{second}"

    def usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def add_calls(self, name: str, pending: dict[int, int]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for second, calls in pending.items():
            pipe.hincrby(self.key(name, second), "calls", calls)
            pipe.expire(self.key(name, second), _KEY_TTL)
        pipe.execute()

    def withdraw(
        self, name: str, now: int, pending: dict[int, int], share: float, reserve: float
    ) -> bool:
        seconds = range(now - WINDOW + 1, now + 1)
        keys = [self.key(name, second) for second in seconds]
        args: list[Any] = [repr(share), repr(reserve), _KEY_TTL]
        args += [pending.get(second, 0) for second in seconds]
        return bool(self._withdraw(keys=keys, args=args))

    def failed(self, error: Exception) -> None:
        with self._lock:
            if not self.usable():
                return  # another thread's command failed first and set the pause
            first, longest = _RETRY_REDIS_AFTER
            self._pause = min(longest, self._pause * 2) if self._pause else first
            self._down_until = time.monotonic() + self._pause
            logger.warning(
                "Redis at %s is unreachable (%s); retry budgets count in this process"
                " alone and try Redis again in %.0f s.",
                hide_password(self.uri),
                error,
                self._pause,
            )

    def succeeded(self) -> None:
        if self._pause:
            with self._lock:
                if self._pause:
                    self._pause = 0.0
                    logger.info(
                        "Redis at %s is reachable again; retry budgets are shared.",
                        hide_password(self.uri),
                    )


class RetryBudget:
    """The budget of one name: its calls and retries in the last :data:`WINDOW` seconds.

    A call's deposit is an increment of this second's slot, without a lock: a
    count lost to a race between threads, now and then, only makes the budget a
    hair tighter. Turning to a new second and withdrawing take the lock.
    """

    def __init__(self, name: str, share: float, floor: float, store: BudgetStore | None) -> None:
        self.name = name
        self.share = share
        self.reserve = floor * WINDOW
        self.store = store
        self._lock = threading.Lock()
        self._second = -1  # the second of the last deposit or withdrawal
        self._slots = [-1] * WINDOW  # the second each slot counts
        self._calls = [0] * WINDOW
        self._retries = [0] * WINDOW
        self._stored = [0] * WINDOW  # calls of each slot already added to Redis
        self._refused_at = -math.inf  # the last refused retry's time: a streak ends a window on

    def deposit(self) -> None:
        """Count one call."""
        now = int(time.time())
        if now != self._second:
            self._turn(now)
        self._calls[now % WINDOW] += 1

    def try_withdraw(self) -> bool:
        """Take a token for one retry; ``False`` (logged once per streak) when there is none."""
        now = int(time.time())
        store = self.store
        if store is not None and store.usable():
            with self._lock:
                self._turn_locked(now)
                pending = self._take_pending(now, with_current=True)
            try:
                allowed = store.withdraw(self.name, now, pending, self.share, self.reserve)
            except store.errors as error:
                store.failed(error)
                allowed = self._withdraw_here(now)
            else:
                store.succeeded()
                if allowed:
                    with self._lock:
                        self._retries[now % WINDOW] += 1
        else:
            allowed = self._withdraw_here(now)
        self._note(allowed)
        return allowed

    def counts(self) -> tuple[int, int]:
        """This process's calls and retries in the window."""
        now = int(time.time())
        with self._lock:
            live = [i for i in range(WINDOW) if now - WINDOW < self._slots[i] <= now]
            return sum(self._calls[i] for i in live), sum(self._retries[i] for i in live)

    def _withdraw_here(self, now: int) -> bool:
        with self._lock:
            self._turn_locked(now)
            live = [i for i in range(WINDOW) if now - WINDOW < self._slots[i] <= now]
            calls = sum(self._calls[i] for i in live)
            retries = sum(self._retries[i] for i in live)
            if retries + 1 > self.share * calls + self.reserve:
                return False
            self._retries[now % WINDOW] += 1
            return True

    def _turn(self, now: int) -> None:
        """Start counting second ``now``; with Redis, add the calls counted so far."""
        with self._lock:
            self._turn_locked(now)
            store = self.store
            if store is None or not store.usable():
                return
            pending = self._take_pending(now, with_current=False)
        if pending:
            try:
                store.add_calls(self.name, pending)
            except store.errors as error:
                store.failed(error)
            else:
                store.succeeded()

    def _turn_locked(self, now: int) -> None:
        self._second = now
        slot = now % WINDOW
        if self._slots[slot] != now:
            self._slots[slot] = now
            self._calls[slot] = self._retries[slot] = self._stored[slot] = 0

    def _take_pending(self, now: int, *, with_current: bool) -> dict[int, int]:
        """The calls of each second of the window not yet added to Redis, marked as added."""
        pending: dict[int, int] = {}
        for slot, second in enumerate(self._slots):
            if not now - WINDOW < second <= now or (second == now and not with_current):
                continue
            calls = self._calls[slot] - self._stored[slot]
            if calls > 0:
                pending[second] = calls
                self._stored[slot] += calls
        return pending

    def _note(self, allowed: bool) -> None:
        """Log the first refusal of a streak: refusals with less than a window between them."""
        if allowed:
            return
        now = time.monotonic()
        refused_before, self._refused_at = self._refused_at, now
        if now - refused_before < WINDOW:
            return
        calls, retries = self.counts()
        logger.warning(
            "The retry budget of %s is spent (%d retries for %d calls in this process"
            " over %d s): its errors are raised without a retry until it has room.",
            self.name,
            retries,
            calls,
            WINDOW,
        )


class RetryBudgets:
    """The budgets of one app (or of the code that runs outside any app), by name."""

    def __init__(self, share: float | None, floor: float, store: BudgetStore | None) -> None:
        self.share = share
        self.floor = floor
        self.store = store
        self._budgets: dict[str, RetryBudget] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> RetryBudget | None:
        """The budget of ``name``, made on first use; ``None`` when budgets are off."""
        found = self._budgets.get(name)
        if found is None:
            if self.share is None:
                return None
            with self._lock:
                found = self._budgets.get(name)
                if found is None:
                    found = self._budgets[name] = RetryBudget(
                        name, self.share, self.floor, self.store
                    )
        return found
