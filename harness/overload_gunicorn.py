"""Gunicorn settings of the overload run with the extension: its hooks, as in production."""

from flask_resilience.gunicorn import child_exit, on_exit, post_fork, worker_exit  # noqa: F401
