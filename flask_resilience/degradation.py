"""``@graceful_degradation``: answer with a fallback, or a recent result, when a call fails.

For service functions whose answer is nice to have (recommendations, a weather
widget): a failure is logged and the page still renders. With ``serve_stale``
the last good result for the same arguments is served instead while it is
young enough (HTTP's stale-if-error, applied to a function).

The stale results are kept per decorated function in this process, keyed by the
call's arguments, at most ``max_entries`` of them, least recently used first out.
Calls whose arguments cannot be hashed are not remembered.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, ParamSpec, TypeVar, cast

from .log import ExtensionLogger

P = ParamSpec("P")
R = TypeVar("R")

logger = ExtensionLogger("degradation")

_MISSING = object()


class _StaleCache:
    """The last good result per arguments, with the monotonic time it was made."""

    def __init__(self, max_age: float, max_entries: int) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def store(self, key: Hashable | None, value: Any) -> None:
        if key is None:
            return
        with self._lock:
            self._entries[key] = (time.monotonic(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def fresh_enough(self, key: Hashable | None) -> Any:
        """The remembered value if younger than ``max_age``, else ``_MISSING``."""
        if key is None:
            return _MISSING
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return _MISSING
            made, value = entry
            if time.monotonic() - made > self.max_age:
                del self._entries[key]
                return _MISSING
            self._entries.move_to_end(key)
            return value


def _key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable | None:
    key = (args, tuple(sorted(kwargs.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def graceful_degradation(
    fallback_value: Any = None,
    serve_stale: float | None = None,
    *,
    exceptions: tuple[type[Exception], ...] = (Exception,),
    max_entries: int = 128,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Return ``fallback_value`` (or a stale result) instead of raising.

    :param fallback_value: returned as is when the call fails and no stale result
        serves; share nothing mutable through it.
    :param serve_stale: seconds a good result may be served again, for the same
        arguments, when a later call fails; ``None`` never serves stale results.
    :param exceptions: the failures to absorb (``Exception`` subclasses); others
        propagate, as do ``KeyboardInterrupt`` and the like.
    :param max_entries: how many argument combinations keep a stale result.
    """
    if serve_stale is not None and (
        isinstance(serve_stale, bool)
        or not isinstance(serve_stale, (int, float))
        or not serve_stale >= 0
    ):
        raise ValueError(f"serve_stale is {serve_stale!r}; expected seconds >= 0 or None.")
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
        raise ValueError(f"max_entries is {max_entries!r}; expected a whole number >= 1.")
    for item in exceptions:
        if not (isinstance(item, type) and issubclass(item, Exception)):
            raise TypeError(f"exceptions holds {item!r}; expected Exception subclasses.")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        cache = _StaleCache(serve_stale, max_entries) if serve_stale is not None else None
        name = getattr(func, "__qualname__", type(func).__qualname__)

        def degrade(error: Exception, key: Hashable | None) -> Any:
            if cache is not None:
                stale = cache.fresh_enough(key)
                if stale is not _MISSING:
                    logger.warning("%s failed (%r); serving its last good result.", name, error)
                    return stale
            logger.warning(
                "%s failed (%r); serving the fallback value.", name, error, exc_info=error
            )
            return fallback_value

        if inspect.iscoroutinefunction(func):
            async_func = cast(Callable[P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                key = _key(args, kwargs) if cache is not None else None
                try:
                    result = await async_func(*args, **kwargs)
                except exceptions as error:
                    return degrade(error, key)
                if cache is not None:
                    cache.store(key, result)
                return result

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key = _key(args, kwargs) if cache is not None else None
            try:
                result = func(*args, **kwargs)
            except exceptions as error:
                return cast(R, degrade(error, key))
            if cache is not None:
                cache.store(key, result)
            return result

        return wrapper

    return decorate
