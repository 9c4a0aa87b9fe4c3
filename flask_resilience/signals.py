"""Signals any part may send: this module imports nothing of the package, only blinker.

Connect a receiver as with Flask's own signals::

    from flask_resilience.signals import breaker_state_changed

    @breaker_state_changed.connect
    def page_on_call(sender, name, old, new):
        if new == "open":
            pager.notify(f"breaker {name} opened")
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

breaker_state_changed = _signals.signal("breaker-state-changed")
"""Sent once per transition of a circuit breaker, by the process that made it.

Keyword arguments: ``name`` (the breaker's), ``old`` and ``new`` (``"closed"``,
``"open"``, ``"half-open"``, ``"forced-open"`` or ``"forced-closed"``). The sender
is the app when the transition happens in an app context, else ``None``. With
Redis storage, the processes that only learn of another's transition send
nothing. A receiver that raises is logged and ignored: it never changes the
outcome of the call that caused the transition.
"""

__all__ = ["breaker_state_changed"]
