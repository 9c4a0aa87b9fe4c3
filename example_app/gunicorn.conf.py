"""Gunicorn settings for the demo.

gunicorn -c example_app/gunicorn.conf.py 'example_app:create_app()'
"""

# Readiness turns 503 on SIGTERM, cleanups run as each worker exits, and the
# in-memory rate-limit warning knows how many workers there are.
from flask_resilience.gunicorn import child_exit, on_exit, post_fork, worker_exit  # noqa: F401

# The master builds the app once and forks each worker from it: a new worker (a
# reload, a recycled or killed one) serves within milliseconds instead of importing
# the database driver and Redis client and building the app again, about half a
# second of CPU each. The startup checks (VALIDATE_ON_STARTUP) run in the master:
# when one fails, say the database cannot be reached, gunicorn does not start
# instead of serving errors. A reload (SIGHUP) forks from the same app, so new code
# needs a restart. Nothing the app builds at import holds a connection: the checks
# open their own and close them, and the pools connect in each worker.
preload_app = True

bind = "127.0.0.1:5000"
# Sync workers handle one request each; two let one stay responsive while the
# other waits on a slow outbound call.
workers = 2
# A worker silent this long is killed and replaced: well above the app's 10-second
# request deadline, at which the extension interrupts a request itself and the
# worker goes on serving, so this only catches a worker stuck in C code.
timeout = 30
graceful_timeout = 30  # at least RESILIENCE_SHUTDOWN_TIMEOUT (30 s)
# Longer than a client (or a load balancer) leaves a kept-alive connection idle:
# a connection the worker closes just as a request is sent on it loses the request.
keepalive = 5
# Recycling workers now and then bounds the damage of a slow memory leak; the
# jitter keeps both workers from restarting at the same moment.
max_requests = 1000
max_requests_jitter = 100
accesslog = "-"
errorlog = "-"
