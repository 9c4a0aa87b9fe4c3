"""The audit of the session cookie settings, one policy for ``init_app`` and the checks.

Debug and testing set-ups are not audited. Otherwise a ``SECRET_KEY`` that cannot
be trusted is a failure of ``flask resilience check``, and an unsafe cookie flag a
warning; ``init_app`` warns about both (``RESILIENCE_SESSION_STRICT`` makes them an
error), unless the startup checks run there and give the same advice themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flask import Flask

from ..config import Settings
from ..errors import ConfigurationError, warn

MIN_SECRET_KEY_LENGTH = 32


_WELL_KNOWN_SECRET_KEYS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "change this",
        "changethis",
        "default",
        "dev",
        "development",
        "development key",
        "flask",
        "hard to guess string",
        "key",
        "my secret key",
        "my-secret-key",
        "mysecretkey",
        "password",
        "s3cr3t",
        "secret",
        "secret key",
        "secret-key",
        "secret_key",
        "secretkey",
        "super secret key",
        "super-secret",
        "super-secret-key",
        "supersecret",
        "supersecretkey",
        "test",
        "testing",
        "you-will-never-guess",
        "your secret key",
        "your-secret-key",
        "your_secret_key",
        "your-secret-key-here",
        "please-change-me",
        '_5#y2l"f4q8z\n\xec]/',
    }
)


MIN_SECRET_KEY_BYTES = 16  # a bytes key is raw randomness: 16 bytes are 128 bits


MIN_DISTINCT_CHARACTERS = 10


@dataclass(frozen=True)
class Finding:
    """One problem of the settings: ``name`` is ``SECRET_KEY`` or ``cookies``."""

    name: str
    severity: Literal["fail", "warn"]
    text: str


def audit(config: Mapping[str, Any]) -> list[Finding]:
    """What is unsafe about these session settings; empty in debug and testing set-ups.

    The secret itself is never quoted.
    """
    if not audited(config):
        return []
    secret = secret_key_problem(config.get("SECRET_KEY"))
    findings = [Finding("SECRET_KEY", "fail", secret)] if secret else []
    return findings + [Finding("cookies", "warn", text) for text in cookie_flag_problems(config)]


def audited(config: Mapping[str, Any]) -> bool:
    """Whether the cookie settings are audited: not in debug or testing set-ups."""
    return not (config.get("DEBUG") or config.get("TESTING"))


def check_cookie_safety(app: Flask, settings: Settings) -> None:
    """Warn about unsafe session cookie settings, or refuse them when strict.

    With ``RESILIENCE_VALIDATE_ON_STARTUP`` the startup checks give the same advice,
    once: it is not given here as well.
    """
    findings = audit(app.config)
    if not findings:
        return
    if settings.session_strict:
        raise ConfigurationError(
            "Unsafe session settings (RESILIENCE_SESSION_STRICT is True): "
            + " ".join(finding.text for finding in findings)
        )
    if settings.validate_on_startup:
        return
    for finding in findings:
        warn(finding.text)


def secret_key_problem(secret: Any) -> str | None:
    """Why ``SECRET_KEY`` cannot be trusted to sign sessions, or ``None``."""
    if not secret:
        return "SECRET_KEY is not set: sessions cannot be signed."
    if _is_well_known(secret):
        return (
            "SECRET_KEY is a well-known default: anyone can forge session cookies."
            " Generate one with: python -c 'import secrets; print(secrets.token_hex())'."
        )
    if isinstance(secret, bytes):
        if len(secret) < MIN_SECRET_KEY_BYTES:
            return (
                f"SECRET_KEY is {len(secret)} bytes long; expected at least"
                f" {MIN_SECRET_KEY_BYTES} random ones (os.urandom(32))."
            )
        return None
    if len(secret) < MIN_SECRET_KEY_LENGTH:
        return (
            f"SECRET_KEY is {len(secret)} characters long; expected at least"
            f" {MIN_SECRET_KEY_LENGTH} random ones (secrets.token_hex())."
        )
    if len(set(secret)) < MIN_DISTINCT_CHARACTERS:
        return "SECRET_KEY repeats a few characters: it is easy to guess (secrets.token_hex())."
    return None


def cookie_flag_problems(config: Mapping[str, Any]) -> list[str]:
    """Cookie flags that let a session or remember-me cookie leak."""
    problems = []
    if not config.get("SESSION_COOKIE_SECURE"):
        problems.append(
            "SESSION_COOKIE_SECURE is False: the session cookie is sent over plain HTTP too."
        )
    if config.get("SESSION_COOKIE_SAMESITE") is None:
        problems.append(
            "SESSION_COOKIE_SAMESITE is not set: the session cookie goes with cross-site"
            " requests. Set it to 'Lax' or 'Strict'."
        )
    if not config.get("SESSION_COOKIE_HTTPONLY", True):
        problems.append("SESSION_COOKIE_HTTPONLY is False: scripts can read the session cookie.")
    if not config.get("REMEMBER_COOKIE_SECURE", True):
        problems.append(
            "REMEMBER_COOKIE_SECURE is False: Flask-Login's remember-me cookie is sent over"
            " plain HTTP too."
        )
    return problems


def _is_well_known(secret: str | bytes) -> bool:
    text = secret.decode("latin-1") if isinstance(secret, bytes) else str(secret)
    return text.strip().lower() in _WELL_KNOWN_SECRET_KEYS
