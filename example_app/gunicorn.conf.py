"""Gunicorn settings for the demo.

gunicorn -c example_app/gunicorn.conf.py 'example_app:create_app()'
"""

# Readiness turns 503 on SIGTERM, cleanups run as each worker exits, and the
# in-memory rate-limit warning knows how many workers there are.
from flask_resilience.gunicorn import child_exit, on_exit, post_fork, worker_exit  # noqa: F401

# Each worker runs the startup checks as it builds its app (VALIDATE_ON_STARTUP): when
# one fails, say the database cannot be reached, the worker does not boot and
# gunicorn stops with status 3 instead of serving errors.

bind = "127.0.0.1:5000"
# Sync workers handle one request each; two let one stay responsive while the
# other waits on a slow outbound call.
workers = 2
# A worker silent this long is killed and replaced: well above the app's 10-second
# request deadline, at which the extension interrupts a request itself and the
# worker goes on serving, so this only catches a worker stuck in C code.
timeout = 30
graceful_timeout = 30  # at least RESILIENCE_SHUTDOWN_TIMEOUT (30 s)
# Recycling workers now and then bounds the damage of a slow memory leak; the
# jitter keeps both workers from restarting at the same moment.
max_requests = 1000
max_requests_jitter = 100
accesslog = "-"
errorlog = "-"
