"""Flask-SQLAlchemy pool hardening, pool status, rollback after a database error, outages.

The production defaults are merged into ``SQLALCHEMY_ENGINE_OPTIONS`` and into each
``SQLALCHEMY_BINDS`` entry with ``setdefault``, so anything the user set wins. They
are only applied to queue pools: ``NullPool`` keeps no connection to recycle or
ping, and the ``StaticPool`` Flask-SQLAlchemy gives an in-memory SQLite database
would lose the database if its one connection were recycled.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from flask import Flask, got_request_exception
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.pool import Pool, QueuePool, StaticPool

from .config import wrong_value
from .errors import ConfigurationError, DatabaseUnavailable, warn
from .log import ExtensionLogger, hide_password
from .outages import classify_database_error
from .state import EXTENSION_KEY, ResilienceState, get_state

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

logger = ExtensionLogger("database")

POOL_DEFAULTS: Mapping[str, Any] = {
    "pool_size": 10,
    "max_overflow": 20,
    "pool_recycle": 3600,
    "pool_pre_ping": True,
    "pool_timeout": 30,
}

# create_engine's option name -> the pool constructor's argument name.
_POOL_ARGUMENTS = {
    "pool_size": "pool_size",
    "max_overflow": "max_overflow",
    "pool_timeout": "timeout",
    "pool_recycle": "recycle",
    "pool_pre_ping": "pre_ping",
}

_LEGACY_KEYS = {
    "SQLALCHEMY_POOL_SIZE": "pool_size",
    "SQLALCHEMY_MAX_OVERFLOW": "max_overflow",
    "SQLALCHEMY_POOL_TIMEOUT": "pool_timeout",
    "SQLALCHEMY_POOL_RECYCLE": "pool_recycle",
}

EngineOptions = dict[str, Any]


@dataclass
class Pools:
    """The database part's state: the pool options in force for each bind key."""

    options: dict[str | None, EngineOptions] = field(default_factory=dict)


def init_app(app: Flask, state: ResilienceState) -> None:
    """Harden the pools, roll back after database errors, survive a lost connection."""
    db = state.db
    if db is None:
        return
    settings = state.settings
    pools = state.add(Pools(harden_pool(app, db) if settings.harden_pool else {}))
    if settings.rollback_on_error:
        rollback_on_error(app, db)
    survive_lost_connection_at_teardown(app, db)
    state.detail_providers["pools"] = lambda: pool_summary(db, pools.options)


def harden_pool(app: Flask, db: SQLAlchemy) -> dict[str | None, EngineOptions]:
    """Merge the pool defaults into the app's engine options and make them take effect.

    Works whether ``db.init_app(app)`` ran before or after: when the engines already
    exist, Flask-SQLAlchemy's own ``init_app`` is run once more, which disposes them
    and builds them again from the hardened options.

    :return: the pool options in force for each bind key (``None``: the default bind).
    """
    _warn_legacy_keys(app.config)
    constructor_options: Mapping[str, Any] = getattr(db, "_engine_options", {})
    in_force: dict[str | None, EngineOptions] = {}

    engine_options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    uri = app.config.get("SQLALCHEMY_DATABASE_URI")
    if uri is not None or "url" in engine_options:
        url = uri if uri is not None else engine_options["url"]
        in_force[None] = _harden(None, engine_options, url, constructor_options)

    binds = app.config.setdefault("SQLALCHEMY_BINDS", {})
    for key, value in list(binds.items()):
        options = dict(value) if isinstance(value, Mapping) else {"url": value}
        in_force[key] = _harden(key, options, options.get("url"), constructor_options)
        binds[key] = options

    if "sqlalchemy" in app.extensions:
        _rebuild_engines(app, db)
    return in_force


def _harden(
    bind: str | None, options: EngineOptions, url: Any, constructor: Mapping[str, Any]
) -> EngineOptions:
    """Validate one engine's options, add the defaults its pool takes, drop what it can't."""
    where = "SQLALCHEMY_ENGINE_OPTIONS" if bind is None else f"SQLALCHEMY_BINDS[{bind!r}]"
    _check_pool_options(where, options)
    if "pool" in options or "creator" in options:
        return {}  # a pool or connection factory of the user's own: leave it alone
    pool_class = _pool_class({**constructor, **options}, url)
    accepted = _accepted_options(pool_class)

    dropped = sorted(name for name in POOL_DEFAULTS if name in options and name not in accepted)
    for name in dropped:
        del options[name]
    if dropped:
        warn(
            f"{where}: {', '.join(dropped)} dropped because {pool_class.__name__} does not take it."
        )
    if issubclass(pool_class, QueuePool):
        for name, default in POOL_DEFAULTS.items():
            if name not in constructor:
                options.setdefault(name, default)
    in_force = {**constructor, **options}
    return {name: in_force[name] for name in POOL_DEFAULTS if name in in_force}


def _check_pool_options(where: str, options: Mapping[str, Any]) -> None:
    def whole(name: str, minimum: int) -> None:
        value = options.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < minimum
        ):
            raise wrong_value(f"{where}[{name!r}]", value, f"a whole number >= {minimum}")

    whole("pool_size", 0)
    whole("max_overflow", -1)
    whole("pool_recycle", -1)
    timeout = options.get("pool_timeout")
    if isinstance(timeout, float) and not timeout.is_integer():
        raise ConfigurationError(
            f"{where}['pool_timeout'] is {timeout!r}; Flask-SQLAlchemy builds engines with"
            " engine_from_config, which truncates it to a whole number of seconds."
            f" Use a whole number, such as {max(1, round(timeout))}."
        )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise wrong_value(f"{where}['pool_timeout']", timeout, "a whole number of seconds > 0")
    pre_ping = options.get("pool_pre_ping")
    if pre_ping is not None and not isinstance(pre_ping, bool):
        raise wrong_value(f"{where}['pool_pre_ping']", pre_ping, "True or False")


def _pool_class(options: Mapping[str, Any], url: Any) -> type[Pool]:
    """The pool class the engine will get, by the same rules as Flask-SQLAlchemy."""
    if url is None:
        raise ConfigurationError(
            "An engine in SQLALCHEMY_BINDS has no 'url'; give each bind a database URL."
        )
    try:
        parsed = sa.engine.make_url(url)
        dialect = parsed.get_dialect()
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as error:
        raise ConfigurationError(f"Cannot read the database URL: {error}") from error
    if parsed.get_backend_name() == "sqlite" and parsed.database in {None, "", ":memory:"}:
        return StaticPool  # Flask-SQLAlchemy's choice, whatever poolclass says
    if "poolclass" in options:
        pool_class: type[Pool] = options["poolclass"]
        return pool_class
    return cast("type[DefaultDialect]", dialect).get_pool_class(parsed)


def _accepted_options(pool_class: type[Pool]) -> set[str]:
    parameters: set[str] = set()
    for klass in pool_class.__mro__:
        if "__init__" in vars(klass):
            parameters.update(inspect.signature(vars(klass)["__init__"]).parameters)
    return {option for option, argument in _POOL_ARGUMENTS.items() if argument in parameters}


def _rebuild_engines(app: Flask, db: SQLAlchemy) -> None:
    """Let Flask-SQLAlchemy build its engines again from the hardened options."""
    if app.extensions["sqlalchemy"] is not db:
        raise ConfigurationError(
            "The app is registered with another SQLAlchemy instance than the db given to"
            " Resilience.init_app; pass that instance."
        )
    if not hasattr(db, "_app_engines"):  # pragma: no cover - a Flask-SQLAlchemy we do not know
        raise ConfigurationError(
            "Call resilience.init_app(app, db=db) before db.init_app(app) with this"
            " version of Flask-SQLAlchemy."
        )
    del app.extensions["sqlalchemy"]
    try:
        db.init_app(app)
    except AssertionError as error:  # Flask refuses setup after the first request
        app.extensions["sqlalchemy"] = db
        raise ConfigurationError(
            "Call resilience.init_app(app, db=db) while setting the app up, before it"
            " handles its first request."
        ) from error
    # Its second init_app registered its teardown and shell context once more.
    _drop_repeats(app.teardown_appcontext_funcs)
    _drop_repeats(app.shell_context_processors)


def _drop_repeats(items: list[Any]) -> None:
    unique: list[Any] = []
    for item in items:
        if item not in unique:
            unique.append(item)
    items[:] = unique


def _warn_legacy_keys(config: Mapping[str, Any]) -> None:
    for key, option in _LEGACY_KEYS.items():
        if key in config:
            warn(
                f"{key} was removed in Flask-SQLAlchemy 3.0 and has no effect; set"
                f" SQLALCHEMY_ENGINE_OPTIONS = {{{option!r}: {config[key]!r}}} instead."
            )


def pools_of(app: Flask) -> Pools:
    """The pool options in force for ``app`` (none when it has no database)."""
    return get_state(app).find(Pools) or Pools()


def pool_summary(
    db: SQLAlchemy, limits: Mapping[str | None, EngineOptions]
) -> dict[str, dict[str, Any]]:
    """:func:`pool_status` without the URLs, keyed ``default`` for the default bind:
    what detailed health, the metrics and ``flask resilience status`` show."""
    summary = {}
    for bind, status in pool_status(db, limits).items():
        status = dict(status)
        status.pop("url", None)
        summary["default" if bind is None else bind] = status
    return summary


def pool_status(
    db: SQLAlchemy, limits: Mapping[str | None, EngineOptions]
) -> dict[str | None, dict[str, Any]]:
    """Live counters of each engine's pool, with the limits it was configured with."""
    status: dict[str | None, dict[str, Any]] = {}
    for key, engine in db.engines.items():
        pool = engine.pool
        entry: dict[str, Any] = {
            "url": hide_password(engine.url.render_as_string(hide_password=False)),
            "pool": type(pool).__name__,
            "size": None,
            "checked_out": None,
            "overflow": None,
            "checked_in": None,
            "limits": dict(limits.get(key, {})),
        }
        if isinstance(pool, QueuePool):
            entry.update(
                size=pool.size(),
                checked_out=pool.checkedout(),
                overflow=max(0, pool.overflow()),
                checked_in=pool.checkedin(),
            )
        status[key] = entry
    return status


def rollback_on_error(app: Flask, db: SQLAlchemy) -> None:
    """Roll the request's session back after a database error, before any error handler runs.

    A failed flush or statement leaves the session (and, on PostgreSQL, the
    transaction) unusable until it is rolled back; an error handler that queries
    (for the current user, say) would then raise ``PendingRollbackError`` and turn
    a clean error page into a second failure. Only errors the database raised do
    this: the session of any other failure (an ``abort(404)``, a ``ValueError``, the
    ORM's ``NoResultFound``) is left as it is, pending objects included, for whoever
    owns it. Flask has no hook
    between an exception and its handler, so the app's ``handle_user_exception``
    is wrapped; ``got_request_exception`` covers errors raised after the view,
    which skip ``handle_user_exception``.
    """

    handle_user_exception = app.handle_user_exception

    def handle_user_exception_after_rollback(error: Exception) -> Any:
        _rollback(db, error)
        return handle_user_exception(error)

    setattr(app, "handle_user_exception", handle_user_exception_after_rollback)  # noqa: B010
    got_request_exception.connect(_rollback_unhandled, weak=False)  # once for every app


def _rollback(db: SQLAlchemy, error: BaseException | None) -> None:
    if not isinstance(error, sa.exc.DBAPIError) or not db.session.registry.has():
        return
    try:
        db.session.rollback()
    except Exception:  # the connection may be gone; the request's error matters more
        logger.warning("Rolling back the session after an error failed", exc_info=True)


def _rollback_unhandled(sender: Any, exception: BaseException, **_: object) -> None:
    """The receiver of every app, which finds the sender's database.

    One receiver per app, connected for that app as sender, would keep each app's
    database alive in the signal for good and leave blinker a weak reference to
    the app to clean up, which is not safe from a thread while another connects.
    """
    state = sender.extensions.get(EXTENSION_KEY) if isinstance(sender, Flask) else None
    if (
        isinstance(state, ResilienceState)
        and state.db is not None
        and state.settings.rollback_on_error
    ):
        _rollback(state.db, exception)


def survive_lost_connection_at_teardown(app: Flask, db: SQLAlchemy) -> None:
    """Keep an answer the view already gave when its connection is lost before teardown.

    When the connection was lost after the request's last query (the server
    restarted, an administrator ended it), the ROLLBACK of Flask-SQLAlchemy's
    ``session.remove()`` at the end of the app context fails, and an exception
    from a teardown function turns the answer into a 500. That failure is caught
    here, around the app's teardown, and the removal Flask-SQLAlchemy began is
    finished: the failure invalidated the connection, so closing is quiet now.
    The session itself is never touched otherwise: an app context that outlives
    its requests (a test's, a command's) keeps it, and its objects, as they are.
    """
    do_teardown_appcontext = app.do_teardown_appcontext

    def teardown_surviving_lost_connection(*args: Any, **kwargs: Any) -> None:
        try:
            do_teardown_appcontext(*args, **kwargs)
        except sa.exc.DBAPIError as error:
            if not isinstance(classify_database_error(error), DatabaseUnavailable):
                raise
            logger.warning(
                "The database connection was lost before the session was closed; the"
                " connection is discarded and the answer stands"
            )
            db.session.remove()

    setattr(app, "do_teardown_appcontext", teardown_surviving_lost_connection)  # noqa: B010
