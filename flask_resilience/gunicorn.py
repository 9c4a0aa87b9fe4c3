"""Server hooks for gunicorn; a ``gunicorn.conf.py`` takes them in one line::

    from flask_resilience.gunicorn import child_exit, on_exit, post_fork, worker_exit

gunicorn handles SIGTERM itself: the master passes it on to each worker, which
stops accepting connections and lets its requests in flight finish within
``graceful_timeout``. These hooks add what gunicorn cannot know about:

* ``post_fork``: tells the app how many workers there are (in-memory rate limits
  are per process) and whether this one replaces another in a running server (its
  startup checks then never stop the server), and drops the master's gauges from the
  metrics (it made them when it imported the app with ``preload_app``, and serves
  no request); when the worker gets SIGTERM, turns
  readiness to 503 at once and ends the worker if it is still busy
  ``RESILIENCE_SHUTDOWN_TIMEOUT`` later;
* ``worker_exit``: closes the worker's copy of the listening sockets, then runs the
  app's cleanups once the worker's requests are done;
* ``child_exit``: in the master, drops a dead worker's live gauges from the
  metrics (``PROMETHEUS_MULTIPROC_DIR``);
* ``on_exit``: runs the master's, for apps loaded there with ``preload_app``.

Keep gunicorn's ``graceful_timeout`` at least ``RESILIENCE_SHUTDOWN_TIMEOUT``, so
that the deadline is the extension's and its cleanups get their time.
"""

from __future__ import annotations

import contextlib
from types import FrameType
from typing import Any

from . import lifecycle, server
from .health.metrics import mark_process_dead

__all__ = ["child_exit", "on_exit", "post_fork", "worker_exit"]


def post_fork(arbiter: Any, worker: Any) -> None:
    """In the new worker, before it installs its signal handlers and loads the app."""
    workers = int(arbiter.cfg.workers)
    # gunicorn counts the workers it forks: the server's first ones are 1 to --workers.
    replacement = int(getattr(worker, "age", 0)) > workers
    server.record_gunicorn_workers(workers, replacement=replacement)
    # With preload_app the master made the app's gauges when it imported it; it
    # serves no request, so they must not stand in the scrapes beside the workers'.
    mark_process_dead(int(arbiter.pid))
    handle_exit = worker.handle_exit

    # The worker installs ``self.handle_exit`` for SIGTERM after this hook: wrapping
    # the attribute chains ours in front of gunicorn's, replacing nothing.
    def drain_then_handle_exit(signum: int, frame: FrameType | None) -> None:
        lifecycle.enforce_deadline()  # drains at once; the process ends by the deadline
        handle_exit(signum, frame)

    worker.handle_exit = drain_then_handle_exit


def worker_exit(arbiter: Any, worker: Any) -> None:
    """In the worker, after its last request: the cleanups, within the deadline."""
    _close_listeners(worker)
    lifecycle.shutdown_all()


def _close_listeners(worker: Any) -> None:
    # A sync worker keeps its copies of the listening sockets until its process ends.
    # Until then, on a shutdown, the kernel accepts connections that no process will
    # serve and resets them when the last worker goes: requests lost after they were
    # sent. Closed now, they are refused, which a client or a load balancer can retry
    # safely. The master and the other workers keep their own copies.
    for listener in getattr(worker, "sockets", None) or ():
        with contextlib.suppress(OSError):
            listener.close()


def child_exit(arbiter: Any, worker: Any) -> None:
    """In the master, when a worker has exited: its live gauges leave the metrics.

    With ``PROMETHEUS_MULTIPROC_DIR``, a dead worker's gauges (memory, threads,
    pools) would otherwise stay in every scrape; its counters are kept, as
    Prometheus wants.
    """
    mark_process_dead(int(worker.pid))


def on_exit(arbiter: Any) -> None:
    """In the master, as it exits."""
    lifecycle.shutdown_all()
