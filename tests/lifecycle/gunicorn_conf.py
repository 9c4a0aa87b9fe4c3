"""gunicorn configuration of the lifecycle tests: the hooks in one line."""

from flask_resilience.gunicorn import child_exit, on_exit, post_fork, worker_exit  # noqa: F401

worker_class = "gthread"
threads = 4
graceful_timeout = 15
