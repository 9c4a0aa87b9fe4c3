"""What the extension can learn about the server process it runs in.

A small shared module: the rate limiter (per-process memory counters), the
startup checks and the lifecycle (who handles SIGTERM) all ask the same
questions, and ``flask_resilience.gunicorn`` answers them from inside gunicorn.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence

_gunicorn_workers: int | None = None
_replacement_worker = False


def record_gunicorn_workers(workers: int, *, replacement: bool = False) -> None:
    """Called by the gunicorn ``post_fork`` hook, before the worker loads the app.

    :param replacement: the worker takes the place of another in a server that was
        already serving (one that crashed or was recycled, a reload), rather than
        being one of the server's first.
    """
    global _gunicorn_workers, _replacement_worker
    _gunicorn_workers = workers
    _replacement_worker = replacement


def replaces_a_worker() -> bool:
    """True in a gunicorn worker started in place of another, once the server was up."""
    return _replacement_worker


def under_gunicorn() -> bool:
    """True in a gunicorn master or worker: gunicorn then handles SIGTERM itself."""
    return _gunicorn_workers is not None or "gunicorn.arbiter" in sys.modules


def worker_count() -> int:
    """How many worker processes serve the app, as far as can be told; 1 if unknown.

    In order: what the gunicorn hooks recorded, gunicorn's ``--workers`` on its
    command line or in ``GUNICORN_CMD_ARGS``, then ``WEB_CONCURRENCY`` (which
    gunicorn and most platforms read as the worker count).
    """
    if _gunicorn_workers is not None:
        return _gunicorn_workers
    if under_gunicorn():
        from_args = _workers_option(
            [*shlex.split(os.environ.get("GUNICORN_CMD_ARGS", "")), *sys.argv[1:]]
        )
        if from_args is not None:
            return from_args
    return _positive_int(os.environ.get("WEB_CONCURRENCY")) or 1


def _workers_option(args: Sequence[str]) -> int | None:
    """The last ``-w N``, ``-wN``, ``--workers N`` or ``--workers=N`` in ``args``."""
    found: int | None = None
    for index, arg in enumerate(args):
        value: str | None = None
        if arg in ("-w", "--workers") and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        elif arg.startswith("-w") and not arg.startswith("--"):
            value = arg[2:]
        found = _positive_int(value) or found
    return found


def _positive_int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    number = int(value)
    return number if number > 0 else None
