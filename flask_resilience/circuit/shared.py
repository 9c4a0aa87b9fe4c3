"""Breakers whose transitions every worker and instance shares through Redis.

What is shared and what is not
    Each process keeps its own window of calls and its own count of consecutive
    failures: recording a call costs no Redis command. The *state* is shared,
    in one hash per breaker, ``flask_resilience:circuit:<name>``: the state,
    an operator's forced state, when it opened, the half-open trials, and a
    version that grows with every transition. A process that sees a threshold
    crossed in its own window opens the breaker for everyone; a transition is
    a Lua script that applies only if the version is the one the process last
    saw, so two processes tripping at once make one transition. Each process
    reads the hash again at most every ``RESILIENCE_CIRCUIT_SYNC_INTERVAL``
    seconds while it is being called, and at once when it needs Redis's word:
    an open breaker whose timeout passed, a half-open admission.

What it costs
    Closed, per call: no Redis command; one ``HMGET`` per breaker, process and
    sync interval. Each transition, half-open admission and trial outcome:
    one script. While open, refused calls cost nothing either; half-open
    refusals are not asked again for a sync interval.

When Redis is unreachable
    Every breaker of the app works on this process's state, starting from the
    last one it read (a forced state included), and Redis is tried again after
    1 s, then 2, 4 ... up to 30 s: a dead Redis costs one failed command per
    pause, never an error of the call. Once Redis answers, its state wins,
    with one exception: this process holds a forced state, and the breaker's
    hash is gone or was made anew since the process last read it (Redis
    restarted without persistence, was flushed, or an empty replica was
    promoted: the hash's ``epoch`` tells), and no operator forced or released
    the breaker in the new one. The process then writes its forced state into
    it. An operator's decision thus outlives a Redis restart as long as one
    process that knew it still runs, or always with Redis persistence; a
    release made after the restart wins over it.

Every command is sent under the breaker's lock, so what Redis answers a process
is never older than what that process did before: its answer is always adopted.

Nothing is sent to Redis when a breaker is made, so a new process never resets
what the others stored, and an app starts while Redis is down.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..log import ExtensionLogger, hide_password
from .breaker import (
    CLOSED,
    FORCED_CLOSED,
    FORCED_OPEN,
    HALF_OPEN,
    OPEN,
    STATES,
    Admission,
    Breaker,
    Change,
    CircuitOpen,
    Policy,
    Trial,
)

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

logger = ExtensionLogger("circuit")

REDIS_KEY_PREFIX = "flask_resilience:circuit:"
_REDIS_TIMEOUT = 0.5  # seconds; a URI's socket_timeout / socket_connect_timeout wins
_RETRY_REDIS_AFTER = (1.0, 30.0)  # first and longest pause before trying Redis again

_FORCED = {"open": FORCED_OPEN, "closed": FORCED_CLOSED}
_FORCING = {FORCED_OPEN: "open", FORCED_CLOSED: "closed"}
_CANONICAL = {state: state for state in (CLOSED, OPEN, HALF_OPEN)}
_FIELDS = ["state", "forced", "opened_at", "version", "epoch"]

# The fields of a breaker's hash:
#   state       closed, open or half-open (missing: closed)
#   forced      open or closed while an operator holds it; none once released
#   opened_at   Unix time of the last opening
#   version     one more per transition
#   epoch       made with the hash: a hash made anew (Redis lost the old one) has another
#   trials, trial_ok, trial_at   the half-open trials taken, succeeded, and the last one's time
#
# Every script takes ARGV[1], an epoch for the hash should it make one, and answers the
# fields as they are after it ran, then what it did.
_HELPERS = """
local function view(did)
  local f = redis.call('HMGET', KEYS[1], 'state', 'forced', 'opened_at', 'version', 'epoch')
  return {f[1], f[2], f[3], f[4], f[5], did}
end
local function version()
  return tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
end
local function forced()
  local value = redis.call('HGET', KEYS[1], 'forced')
  return value and value ~= 'none'
end
local function stamp()
  redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
end
"""

# ARGV[2..]: the version the caller saw, now. Opens from closed or half-open.
_TRIP = (
    _HELPERS
    + """
if version() ~= tonumber(ARGV[2]) or forced() then return view(0) end
stamp()
redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[3], 'version', version() + 1,
  'trials', 0, 'trial_ok', 0)
return view(1)
"""
)

# ARGV[2..]: trials allowed, now, lease, reset timeout. Moves an open breaker whose
# time has come to half-open, then takes a trial if one is left. A process killed
# during a trial never gives its place back: after ``lease`` seconds without a new
# trial, the places taken and not yet succeeded are presumed lost.
# did: 1 for a trial granted, + 2 when this call moved the breaker to half-open.
_ADMIT = (
    _HELPERS
    + """
if forced() then return view(0) end
local now = tonumber(ARGV[3])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local moved = 0
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  if now < opened + tonumber(ARGV[5]) then return view(0) end
  stamp()
  redis.call('HSET', KEYS[1], 'state', 'half-open', 'version', version() + 1,
    'trials', 0, 'trial_ok', 0)
  state = 'half-open'
  moved = 2
end
if state ~= 'half-open' then return view(0) end
local trials = tonumber(redis.call('HGET', KEYS[1], 'trials') or '0')
if trials >= tonumber(ARGV[2]) then
  local last = tonumber(redis.call('HGET', KEYS[1], 'trial_at') or '0')
  if now - last < tonumber(ARGV[4]) then return view(moved) end
  trials = tonumber(redis.call('HGET', KEYS[1], 'trial_ok') or '0')
end
redis.call('HSET', KEYS[1], 'trials', trials + 1, 'trial_at', ARGV[3])
return view(moved + 1)
"""
)

# ARGV[2..]: the trial's version, trials needed. Closes once enough trials succeeded.
_TRIAL_OK = (
    _HELPERS
    + """
if version() ~= tonumber(ARGV[2]) or redis.call('HGET', KEYS[1], 'state') ~= 'half-open'
    or forced() then
  return view(0)
end
if redis.call('HINCRBY', KEYS[1], 'trial_ok', 1) < tonumber(ARGV[3]) then return view(0) end
redis.call('HSET', KEYS[1], 'state', 'closed', 'version', version() + 1, 'trials', 0,
  'trial_ok', 0)
redis.call('HDEL', KEYS[1], 'opened_at')
return view(1)
"""
)

# ARGV[2]: the trial's version.
_GIVE_BACK = (
    _HELPERS
    + """
if version() == tonumber(ARGV[2]) and redis.call('HGET', KEYS[1], 'state') == 'half-open' then
  local trials = tonumber(redis.call('HGET', KEYS[1], 'trials') or '0')
  if trials > tonumber(redis.call('HGET', KEYS[1], 'trial_ok') or '0') then
    redis.call('HSET', KEYS[1], 'trials', trials - 1)
  end
end
return view(0)
"""
)

# ARGV[2]: open or closed to force, none to reset (which releases a forced state:
# the release is kept, so that no process writes back a forced state it knew).
# did: the state before, as every process sees it.
_OPERATE = (
    _HELPERS
    + """
local before = view(0)
local old = before[1] or 'closed'
if before[2] and before[2] ~= 'none' then old = 'forced-' .. before[2] end
stamp()
redis.call('HSET', KEYS[1], 'forced', ARGV[2], 'version', version() + 1)
if ARGV[2] == 'none' then
  redis.call('HDEL', KEYS[1], 'opened_at')
  redis.call('HSET', KEYS[1], 'state', 'closed', 'trials', 0, 'trial_ok', 0)
end
return view(old)
"""
)

# ARGV[2..]: the forced state, the epoch the caller read ('' for no hash). Writes a
# process's forced state back into a hash made anew, unless an operator forced or
# released the breaker in it (or it changed again since the caller read it).
_RESTORE = (
    _HELPERS
    + """
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
if epoch ~= ARGV[3] or redis.call('HEXISTS', KEYS[1], 'forced') == 1 then return view(0) end
stamp()
redis.call('HSET', KEYS[1], 'forced', ARGV[2], 'version', version() + 1)
return view(1)
"""
)


class RedisLink:
    """One app's Redis client and whether it is usable, shared by its breakers.

    After a Redis error every breaker of the app keeps its state in memory and
    Redis is tried again after 1 s, then 2, 4 … up to 30 s while it stays down.
    """

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
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._pause = 0.0

    def usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, error: Exception) -> None:
        with self._lock:
            if not self.usable():
                return  # another thread's command failed first and set the pause
            first, longest = _RETRY_REDIS_AFTER
            self._pause = min(longest, self._pause * 2) if self._pause else first
            self._down_until = time.monotonic() + self._pause
            logger.warning(
                "Redis at %s is unreachable (%s); circuit breakers keep their state in"
                " this process and try Redis again in %.0f s.",
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
                        "Redis at %s is reachable again; circuit breakers share their state.",
                        hide_password(self.uri),
                    )


class _Fields:
    """A breaker's hash as a script or a read answered it."""

    __slots__ = ("decided", "did", "epoch", "forced", "opened_at", "state", "version")

    def __init__(self, reply: list[Any]) -> None:
        state, forced, opened_at, version, epoch = (_text(value) for value in reply[:5])
        self.state = _CANONICAL.get(state or CLOSED, CLOSED)
        self.forced = _FORCED.get(forced or "")
        self.decided = forced is not None  # an operator forced or released it
        self.opened_at = float(opened_at) if opened_at else None
        self.version = int(version) if version else 0
        self.epoch = epoch or ""
        self.did: Any = _text(reply[5]) if len(reply) > 5 else None

    @property
    def effective(self) -> str:
        return self.forced or self.state


def _text(value: object) -> str | None:
    return value.decode() if isinstance(value, bytes) else None if value is None else str(value)


class SharedBreaker(Breaker):
    """A breaker whose transitions go through Redis while it answers (see the module)."""

    def __init__(self, policy: Policy, link: RedisLink, sync_interval: float) -> None:
        super().__init__(policy)
        self._link = link
        self.key = REDIS_KEY_PREFIX + policy.name
        client = link.client
        self._scripts: dict[str, Script] = {
            name: client.register_script(source)
            for name, source in (
                ("trip", _TRIP),
                ("admit", _ADMIT),
                ("trial_ok", _TRIAL_OK),
                ("give_back", _GIVE_BACK),
                ("operate", _OPERATE),
                ("restore", _RESTORE),
            )
        }
        self._interval = sync_interval
        self._sync_due = 0.0  # monotonic time of the next read; 0: at the first call
        self._ask_after = 0.0  # half-open and its trials taken: refuse until then
        self._epoch = ""  # of the hash last read; "" before any, or when there was none

    @property
    def storage(self) -> str:  # type: ignore[override]
        return "redis" if self._link.usable() else "memory"

    @property
    def state(self) -> str:
        self._sync()
        return self._state

    def snapshot(self) -> dict[str, Any]:
        self._sync()
        return self._snapshot()

    def admit(self) -> Admission:
        if time.monotonic() >= self._sync_due:
            self._sync()
        if self._state is CLOSED:
            return None
        return self._admit_other()

    # --- Redis, or this process while it does not answer ------------------------

    def _run(self, script: str, *args: str | float) -> _Fields | None:
        """A script's answer, or ``None`` when Redis is not usable.

        Under the lock, like every command sent: what Redis answers is never older
        than what this process did before.
        """
        if not self._link.usable():
            return None
        try:
            reply = self._scripts[script](keys=[self.key], args=[uuid.uuid4().hex, *args])
        except self._link.errors as error:
            self._link.failed(error)
            return None
        self._link.succeeded()
        return _Fields(reply)

    def _sync(self) -> None:
        """Read the shared state now and adopt it."""
        self._sync_due = time.monotonic() + self._interval
        if not self._link.usable():
            return
        with self._lock:
            try:
                reply = self._link.client.hmget(self.key, _FIELDS)
            except self._link.errors as error:
                self._link.failed(error)
                return
            self._link.succeeded()
            fields = _Fields(list(reply))
            if self._lost_forced_state(fields):
                restored = self._restore(fields)
                if restored is None:
                    return  # Redis failed again: keep what this process knows
                fields = restored
            self._adopt(fields)

    def _lost_forced_state(self, fields: _Fields) -> bool:
        """Whether Redis lost the forced state this process holds: its hash is gone or
        made anew, and no operator forced or released the breaker in the new one."""
        return (
            self._state in (FORCED_OPEN, FORCED_CLOSED)
            and fields.epoch != self._epoch
            and not fields.decided
        )

    def _restore(self, fields: _Fields) -> _Fields | None:
        """Write this process's forced state back into the breaker's hash."""
        restored = self._run("restore", _FORCING[self._state], fields.epoch)
        if restored is not None and restored.did == "1":
            logger.warning(
                "Circuit breaker %r: Redis had lost its forced state; this process wrote"
                " it back (%s).",
                self.name,
                self._state,
            )
        return restored

    def _adopt(self, fields: _Fields) -> None:
        """Take the shared state as this process's (under the lock)."""
        old, new = self._state, fields.effective
        new_period = fields.version != self._version or fields.epoch != self._epoch
        self._version = fields.version
        self._epoch = fields.epoch
        self._state = new
        self._opened_at = fields.opened_at
        if new == OPEN:
            remaining = (fields.opened_at or 0.0) + self.policy.reset_timeout - time.time()
            self._retry_at = time.monotonic() + max(0.0, remaining)
        elif new == HALF_OPEN and old != HALF_OPEN:
            self._trials = self._trial_ok = 0
        elif new == CLOSED and (new_period or old != CLOSED):
            self._opened_at = None
            self._clear_window()
        if old != new:
            self._ask_after = 0.0
            logger.debug("Circuit breaker %r is %s (shared state).", self.name, new)

    # --- the transitions, through Redis -------------------------------------------

    def _take_trial(self) -> Admission:
        if not self._link.usable():
            return super()._take_trial()
        if time.monotonic() < self._ask_after:
            raise CircuitOpen(self.name, 1, state=HALF_OPEN)
        policy = self.policy
        with self._lock:
            fields = self._run(
                "admit",
                policy.half_open_calls,
                repr(time.time()),
                policy.trial_lease,
                policy.reset_timeout,
            )
            if fields is not None:
                self._adopt(fields)
                did = int(fields.did or 0)
        if fields is None:
            return super()._take_trial()
        trial = Trial(self._version) if did & 1 else None
        self._announce((OPEN, HALF_OPEN, "its reset timeout passed") if did & 2 else None)
        if trial is not None:
            return trial
        if self._state == HALF_OPEN:
            self._ask_after = time.monotonic() + min(self._interval, 1.0)
        return self._refused_or_admitted()

    def _trip(self, reason: str) -> Change | None:
        old = self._state
        fields = self._run("trip", self._version, repr(time.time()))
        if (
            fields is not None
            and fields.did != "1"
            and fields.epoch != self._epoch
            and fields.effective == CLOSED
        ):
            # Redis lost the hash this process knew (a restart without persistence):
            # the new one is closed, and this process's window says to open it.
            fields = self._run("trip", fields.version, repr(time.time()))
        if fields is None:
            return super()._trip(reason)
        self._adopt(fields)
        return self._made(old, reason) if fields.did == "1" else None

    def _trial_succeeded(self, trial: Trial) -> Change | None:
        old = self._state
        fields = self._run("trial_ok", trial.version, self.policy.half_open_calls)
        if fields is None:
            return super()._trial_succeeded(trial)
        self._adopt(fields)
        trials = self.policy.half_open_calls
        return self._made(old, f"{trials} trial calls succeeded") if fields.did == "1" else None

    def abandon(self, admission: Admission) -> None:
        if not isinstance(admission, Trial):
            return
        with self._lock:
            fields = self._run("give_back", admission.version)
        if fields is None:
            super().abandon(admission)

    def _operate(self, target: str, reason: str) -> None:
        with self._lock:
            fields = self._run("operate", _FORCING.get(target, "none"))
            if fields is None:
                change = self._enter(target, reason)
            else:
                self._adopt(fields)
                if target == CLOSED:
                    self._clear_window()
                old = fields.did if fields.did in STATES else CLOSED
                change = (old, self._state, reason) if old != self._state else None
        self._announce(change)

    def _made(self, old: str, reason: str) -> Change | None:
        """The transition this process's script made, to announce."""
        return (old, self._state, reason) if old != self._state else None
