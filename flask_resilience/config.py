"""Every ``RESILIENCE_*`` configuration key: its default, its check and its meaning.

``SETTINGS`` is the one list of the extension's own keys. ``load_config`` fills in
the defaults with ``app.config.setdefault``, checks every value and warns about a
``RESILIENCE_*`` key that is not known (usually a typo). docs/configuration.md
documents each key; a test keeps the two in step.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from types import MappingProxyType
from typing import Any

from flask import Flask

from .errors import ConfigurationError, warn

Check = Callable[[str, Any], Any]
"""Takes the key and the configured value; returns the value to use or raises."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    check: Check
    doc: str


def setting(default: Any, check: Check, doc: str) -> Any:
    """A field of :class:`Settings`: its default, the check of a configured value, its meaning."""
    metadata = {"check": check, "doc": doc}
    if type(default).__hash__ is None:  # a mapping: dataclasses want it made per instance
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


def _default(setting_field: Field[Any]) -> Any:
    if setting_field.default is not MISSING:
        return setting_field.default
    return setting_field.default_factory()  # type: ignore[operator]


def wrong_value(key: str, value: Any, expected: str) -> ConfigurationError:
    """The error for a configuration value, in the one wording every key uses."""
    return ConfigurationError(f"{key} is {value!r}; expected {expected}.")


def check_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise wrong_value(key, value, "True or False")


def check_number(*, minimum: float = 0, integer: bool = False, optional: bool = False) -> Check:
    """A check for a number not below ``minimum`` (``None`` too when ``optional``)."""
    kind = "a whole number" if integer else "a number"
    expected = f"{kind} >= {minimum:g}" + (" or None" if optional else "")

    def check(key: str, value: Any) -> int | float | None:
        if value is None and optional:
            return None
        is_number = isinstance(value, int if integer else (int, float))
        if is_number and not isinstance(value, bool) and math.isfinite(value) and value >= minimum:
            return value  # type: ignore[no-any-return]
        raise wrong_value(key, value, expected)

    return check


def check_choice(*choices: str) -> Check:
    def check(key: str, value: Any) -> str:
        if value in choices:
            return value  # type: ignore[no-any-return]
        raise wrong_value(key, value, "one of " + ", ".join(repr(c) for c in choices))

    return check


def check_storage_uri(key: str, value: Any) -> str | None:
    """A Redis URI (``redis://``, ``rediss://`` or ``unix://``), or ``None``."""
    if value is None:
        return None
    if isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://")):
        return value
    raise wrong_value(key, value, "None or a URI starting with redis://, rediss:// or unix://")


def check_str_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise wrong_value(key, value, "a list of strings")


def check_nonempty_str(key: str, value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    raise wrong_value(key, value, "a non-empty string")


def check_optional_str(key: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise wrong_value(key, value, "a non-empty string or None")


_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")


def check_header_name(key: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and _HEADER_NAME.fullmatch(value)):
        return value
    raise wrong_value(key, value, "None or a header name (letters, digits and '-')")


def check_url_prefix(key: str, value: Any) -> str:
    if isinstance(value, str) and value.startswith("/") and not value.endswith("/"):
        return value
    raise wrong_value(key, value, "a path that starts with '/' and does not end with '/'")


def check_fraction(key: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
        return float(value)
    raise wrong_value(key, value, "a number >= 0 and < 1")


ALERT_THRESHOLD_DEFAULTS: Mapping[str, float] = MappingProxyType(
    {
        "cpu_usage": 80.0,
        "memory_usage": 85.0,
        "disk_usage": 90.0,
        "response_time": 5.0,
        "error_rate": 5.0,
        "db_connections": 80.0,
    }
)


def check_alert_thresholds(key: str, value: Any) -> Mapping[str, float]:
    """Thresholds the user gives are merged over the defaults; unknown names are refused."""
    if not isinstance(value, Mapping):
        raise wrong_value(key, value, "a dict of threshold name to number")
    unknown = sorted(str(name) for name in value if name not in ALERT_THRESHOLD_DEFAULTS)
    if unknown:
        raise wrong_value(
            key, value, "only the names " + ", ".join(sorted(ALERT_THRESHOLD_DEFAULTS))
        )
    merged = dict(ALERT_THRESHOLD_DEFAULTS)
    for name, number in value.items():
        positive = check_number(minimum=0)(f"{key}[{name!r}]", number)
        if positive == 0:
            raise wrong_value(f"{key}[{name!r}]", number, "a number > 0")
        merged[name] = float(positive)
    return MappingProxyType(merged)


_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NO_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType({})


def check_health_groups(key: str, value: Any) -> Mapping[str, tuple[str, ...]]:
    """Group name (a path segment) to a non-empty list of check names.

    Whether each name is a registered check is asked at the app's first request,
    when the checks registered after ``init_app`` are known too.
    """
    if not isinstance(value, Mapping):
        raise wrong_value(key, value, "a dict of group name to a list of check names")
    groups: dict[str, tuple[str, ...]] = {}
    for name, members in value.items():
        if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
            raise wrong_value(
                f"{key}[{name!r}]", name, "a group name of letters, digits, '_', '.' and '-'"
            )
        if (
            isinstance(members, str)
            or not isinstance(members, (list, tuple))
            or not members
            or not all(isinstance(member, str) and member for member in members)
        ):
            raise wrong_value(f"{key}[{name!r}]", members, "a non-empty list of check names")
        groups[name] = tuple(dict.fromkeys(members))
    return MappingProxyType(groups)


def check_positive(key: str, value: Any) -> float:
    number = check_number(minimum=0)(key, value)
    if number == 0:
        raise wrong_value(key, value, "a number > 0")
    return float(number)


def check_path(key: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.startswith("/")):
        return value
    raise wrong_value(key, value, "None or a URL path starting with '/'")


def check_timeout(key: str, value: Any) -> float | None:
    """Seconds > 0, or ``None`` for no timeout."""
    if value is None:
        return None
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if is_number and math.isfinite(value) and value > 0:
        return value  # type: ignore[no-any-return]
    raise wrong_value(key, value, "a number of seconds > 0 or None")


def check_optional_name(key: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise wrong_value(key, value, "None or a non-empty string")


def check_session_schema(key: str, value: Any) -> Mapping[str, tuple[type, ...]] | None:
    """A mapping of session key to a type or a tuple of types."""
    if value is None:
        return None
    expected = "None or a mapping of session key (str) to a type or a tuple of types"
    if not isinstance(value, Mapping):
        raise wrong_value(key, value, expected)
    schema: dict[str, tuple[type, ...]] = {}
    for name, types in value.items():
        kinds = types if isinstance(types, tuple) else (types,)
        if not isinstance(name, str) or not kinds or not all(isinstance(k, type) for k in kinds):
            raise wrong_value(f"{key}[{name!r}]", types, "a type or a tuple of types")
        schema[name] = kinds
    return MappingProxyType(schema)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])i?b?|b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: Any) -> int:
    """Bytes from a whole number or a size such as ``"10MB"`` or ``"1.5 GiB"``.

    Units are binary whatever their spelling: ``"1KB"`` and ``"1KiB"`` are 1024 bytes.

    :raises ValueError: not a size, or negative.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            return int(float(match[1]) * _SIZE_UNITS[(match[2] or "").lower()])
    raise ValueError(f"{value!r} is not a size; give bytes or a size such as '10MB'.")


def check_size(key: str, value: Any) -> int:
    try:
        return parse_size(value)
    except ValueError:
        raise wrong_value(key, value, "a number of bytes or a size such as '10MB'") from None


def check_optional_path(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)) and os.fspath(value):
        return str(os.fspath(value))
    raise wrong_value(key, value, "a directory path or None")


@dataclass(frozen=True)
class Settings:
    """Every ``RESILIENCE_*`` key of one app, read and checked once by ``load_config``.

    ``settings.request_timeout`` is ``RESILIENCE_REQUEST_TIMEOUT``: each field is its
    key's name without the prefix, in lower case, with its default, its check and
    its meaning. The parts of the extension are handed these typed values; none
    reads ``app.config`` again.
    """

    harden_pool: bool = setting(
        True,
        check_bool,
        "Merge production pool defaults into SQLALCHEMY_ENGINE_OPTIONS and SQLALCHEMY_BINDS.",
    )
    body_limits: bool = setting(
        True,
        check_bool,
        "Give MAX_CONTENT_LENGTH 50 MB where it is None (Flask's 'no limit'), and check"
        " MAX_FORM_MEMORY_SIZE and MAX_FORM_PARTS.",
    )
    health_enabled: bool = setting(
        True,
        check_bool,
        "Mount the health blueprint.",
    )
    health_url_prefix: str = setting(
        "/health",
        check_url_prefix,
        "Where the health blueprint is mounted.",
    )
    health_token: str | None = setting(
        None,
        check_optional_str,
        "Bearer token for detailed, metrics, dashboard and the monitoring switch.",
    )
    health_check_timeout: float = setting(
        1.0,
        check_positive,
        "Seconds a health check may take before it counts as failed (per check default).",
    )
    health_cache_ttl: float = setting(
        5.0,
        check_number(minimum=0),
        "Seconds a passing (or warning) check result is reused.",
    )
    health_cache_ttl_failed: float = setting(
        1.0,
        check_number(minimum=0),
        "Seconds a failed check result is reused.",
    )
    health_version: str | None = setting(
        None,
        check_optional_str,
        "The service version shown by detailed health.",
    )
    health_groups: Mapping[str, tuple[str, ...]] = setting(
        NO_GROUPS,
        check_health_groups,
        "Named groups of health checks, each served at <prefix>/group/<name>.",
    )
    monitor_enabled: bool = setting(
        True,
        check_bool,
        "Run the background monitor (one thread per worker, started on the first request).",
    )
    monitor_interval: float = setting(
        5.0,
        check_positive,
        "Seconds between monitor samples.",
    )
    monitor_history: int = setting(
        360,
        check_number(minimum=1, integer=True),
        "Samples the monitor keeps (a ring buffer).",
    )
    monitor_redis_url: str | None = setting(
        None,
        check_optional_str,
        "Redis URL sharing the monitor's on/off switch between workers"
        " (default: a file in the instance folder).",
    )
    monitor_gc_on_critical: bool = setting(
        False,
        check_bool,
        "Run gc.collect() when memory reaches the critical level.",
    )
    monitor_leak_samples: int = setting(
        30,
        check_number(minimum=3, integer=True),
        "Samples of steady RSS growth after which a memory leak is suspected.",
    )
    tracemalloc: bool = setting(
        False,
        check_bool,
        "Trace allocations; detailed health?tracemalloc=1 then shows the top ones.",
    )
    alert_thresholds: Mapping[str, float] = setting(
        ALERT_THRESHOLD_DEFAULTS,
        check_alert_thresholds,
        "Alert thresholds merged over the defaults (cpu_usage, memory_usage, disk_usage,"
        " response_time, error_rate, db_connections).",
    )
    alert_warning_margin: float = setting(
        0.1,
        check_fraction,
        "Share of a threshold below it where the level is already warning.",
    )
    alert_hysteresis: float = setting(
        0.05,
        check_fraction,
        "Share of a threshold a value must fall below a level's boundary to leave it.",
    )
    api_prefixes: tuple[str, ...] = setting(
        ("/api",),
        check_str_list,
        "Paths under these prefixes always get problem+json, never an HTML error page.",
    )
    error_format: str = setting(
        "auto",
        check_choice("auto", "json", "html", "off"),
        "auto: HTML for browsers outside the API prefixes, else problem+json; off: Flask's"
        " own error pages, the extension answers no error itself.",
    )
    ratelimit_headers: str = setting(
        "legacy",
        check_choice("legacy", "ietf", "both"),
        "Rate-limit headers: legacy X-RateLimit-*, the IETF draft's RateLimit-Policy and"
        " RateLimit, or both.",
    )
    problem_type_base: str = setting(
        "urn:flask-resilience:problem:",
        check_nonempty_str,
        "Prefix of the type URI of the extension's problem documents; each kind of"
        " problem is named after it (docs/problems.md).",
    )
    log_json: bool = setting(
        False,
        check_bool,
        "Format log records as JSON lines.",
    )
    log_context: bool = setting(
        True,
        check_bool,
        "Give every log record request_id, method, path, remote_addr and user_id.",
    )
    rollback_on_error: bool = setting(
        True,
        check_bool,
        "Roll the Flask-SQLAlchemy session back after a database error, before the app's"
        " error handlers run.",
    )
    request_id_header: str | None = setting(
        "X-Request-ID",
        check_header_name,
        "Header of the request id: a valid incoming one is kept, every response carries it."
        " None: ids are made for logs and problems only, never read or sent.",
    )
    request_timeout: float | None = setting(
        30,
        check_number(minimum=0.001, optional=True),
        "Seconds a request may spend; enforced on its database statements. None: no limit.",
    )
    interrupt_on_deadline: bool = setting(
        False,
        check_bool,
        "Interrupt a request still running at its deadline and answer 504 (see"
        " docs/deadlines.md for what can be interrupted).",
    )
    max_queue_time: float | None = setting(
        None,
        check_number(minimum=0.001, optional=True),
        "Seconds a request may wait before a worker takes it (X-Request-Start);"
        " a longer wait gets 503 at once. None: never shed.",
    )
    database_retry_after: int = setting(
        5,
        check_number(minimum=0, integer=True),
        "Retry-After seconds sent with 503 answers when the database is unavailable.",
    )
    client_errors_url: str | None = setting(
        None,
        check_path,
        "Mount a POST endpoint at this path for front ends to report their errors.",
    )
    session_guard: bool = setting(
        True,
        check_bool,
        "Wrap the session interface: a session cookie that cannot be read gives an empty"
        " session, its cookie deleted, instead of a 500. Always on with session timeouts.",
    )
    session_schema: Mapping[str, tuple[type, ...]] | None = setting(
        None,
        check_session_schema,
        "Session key -> type (or tuple of types); a session holding another type is cleared.",
    )
    session_idle_timeout: float | None = setting(
        None,
        check_timeout,
        "Seconds a session may go unused before it expires (checked server-side). None: never.",
    )
    session_absolute_timeout: float | None = setting(
        None,
        check_timeout,
        "Seconds a session may live after it began, however active. None: no limit.",
    )
    session_strict: bool = setting(
        False,
        check_bool,
        "Refuse to start (ConfigurationError) with unsafe session cookie settings.",
    )
    login_view: str | None = setting(
        None,
        check_optional_name,
        "Endpoint or URL browsers are redirected to on 401; None: Flask-Login's login_view.",
    )
    org_id_source: str = setting(
        "view",
        check_choice("view", "session", "query"),
        "Where org_access_required finds the organization id: view argument, session or query.",
    )
    trusted_proxies: int = setting(
        0,
        check_number(minimum=0, integer=True),
        "How many proxies in front of the app set X-Forwarded-For/-Proto (Werkzeug's ProxyFix).",
    )
    validate_on_startup: bool = setting(
        False,
        check_bool,
        "Run the startup checks in init_app and refuse to start when one fails.",
    )
    startup_retries: int = setting(
        5,
        check_number(minimum=1, integer=True),
        "Attempts, with exponential backoff, to reach each database and Redis at startup.",
    )
    shutdown_timeout: float = setting(
        30,
        check_number(minimum=0.001),
        "Seconds a graceful shutdown (drain and cleanups) may take before it is forced.",
    )
    handle_sigterm: bool = setting(
        True,
        check_bool,
        "Outside gunicorn, shut down gracefully on SIGTERM (drain, cleanups, exit 0) when"
        " nothing else handles it; never in TESTING.",
    )
    folders: tuple[str, ...] = setting(
        (),
        check_str_list,
        "Extra folders the startup checks require to exist and be writable.",
    )
    circuit_storage_uri: str | None = setting(
        None,
        check_storage_uri,
        "Redis that keeps circuit breaker state for every worker; None keeps it per process.",
    )
    circuit_sync_interval: float = setting(
        0.5,
        check_number(),
        "With Redis storage, the longest a process goes on a breaker's state before"
        " reading it again while it is called.",
    )
    circuit_fail_max: int = setting(
        5,
        check_number(minimum=1, integer=True),
        "Consecutive failures that open a circuit breaker.",
    )
    circuit_reset_timeout: float = setting(
        60,
        check_number(),
        "Seconds an open circuit breaker waits before letting trial calls through.",
    )
    retry_max_retries: int = setting(
        3,
        check_number(integer=True),
        "Retries after the first attempt for retry_on_failure.",
    )
    retry_delay: float = setting(
        1.0,
        check_number(),
        "Seconds before the first retry; each later wait is backoff times longer.",
    )
    retry_max_delay: float = setting(
        30.0,
        check_number(),
        "Upper bound, in seconds, of any one wait between retries.",
    )
    retry_budget: float | None = setting(
        0.2,
        check_number(minimum=0, optional=True),
        "retry_on_failure: retries of one name may be at most this share of its calls over"
        " the last 10 s, beyond the floor. None: no budget.",
    )
    retry_budget_floor: float = setting(
        10,
        check_number(minimum=0),
        "retry_on_failure: retries per second that each name may make whatever its calls,"
        " so that a quiet service still retries.",
    )
    outbound_timeout: float = setting(
        10.0,
        check_positive,
        "Seconds an outbound call may take when it names no timeout of its own (then"
        " narrowed to the time left before the request's deadline).",
    )
    bulkhead_max_concurrent: int = setting(
        10,
        check_number(minimum=1, integer=True),
        "Concurrent calls a bulkhead lets through per process.",
    )
    upload_max_size: int = setting(
        10 * 1024 * 1024,
        check_size,
        "Largest upload a policy without max_size accepts: bytes or a size such as '10MB'.",
    )
    upload_categories: tuple[str, ...] = setting(
        ("images", "documents"),
        check_str_list,
        "Upload categories a policy that names neither categories nor extensions accepts.",
    )
    upload_folder: str | None = setting(
        None,
        check_optional_path,
        "Directory save_upload and send_upload use when given none; relative to the"
        " instance folder.",
    )


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(f"RESILIENCE_{f.name.upper()}", _default(f), f.metadata["check"], f.metadata["doc"])
    for f in fields(Settings)
)

# Keys that belong to Flask; the extension only replaces Flask's "no limit" default.
FLASK_LIMITS: Mapping[str, int] = {
    "MAX_CONTENT_LENGTH": 50 * 1024 * 1024,
    "MAX_FORM_MEMORY_SIZE": 500_000,
    "MAX_FORM_PARTS": 1_000,
}

SETTING_NAMES = frozenset(setting.name for setting in SETTINGS)
# Checked, so that a default reads the same as a configured value (a size in bytes, say).
DEFAULT_SETTINGS = Settings(
    **{s.name.removeprefix("RESILIENCE_").lower(): s.check(s.name, s.default) for s in SETTINGS}
)


def load_config(app: Flask) -> Settings:
    """Read, default and check every ``RESILIENCE_*`` key of ``app.config``, once.

    Defaults are written into ``app.config`` with ``setdefault``, the way Flask
    extensions do, so the app sees the values in force.
    """
    _warn_unknown_keys(app.config)
    values = {
        setting.name: setting.check(
            setting.name, app.config.setdefault(setting.name, setting.default)
        )
        for setting in SETTINGS
    }
    settings = Settings(
        **{name.removeprefix("RESILIENCE_").lower(): v for name, v in values.items()}
    )
    if settings.body_limits:
        _apply_flask_limits(app.config)
    return settings


def _warn_unknown_keys(config: Mapping[str, Any]) -> None:
    for key in config:
        if key.startswith("RESILIENCE_") and key not in SETTING_NAMES:
            close = difflib.get_close_matches(key, SETTING_NAMES, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            warn(f"Unknown configuration key {key}; flask_resilience ignores it.{hint}")


def _apply_flask_limits(config: dict[str, Any]) -> None:
    """Give Flask's body limits a value where they have none, and check them."""
    for key, default in FLASK_LIMITS.items():
        if config.get(key) is None:
            config[key] = default
        check_number(minimum=1, integer=True)(key, config[key])
