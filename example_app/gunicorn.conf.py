"""Gunicorn settings for the demo.

gunicorn -c example_app/gunicorn.conf.py 'example_app:create_app()'
"""

bind = "127.0.0.1:5000"
# Sync workers handle one request each; two let one stay responsive while the
# other waits on a slow outbound call.
workers = 2
# A worker silent this long is killed and replaced; generous next to the
# 2-second outbound timeout, short enough that a hung worker comes back soon.
timeout = 30
graceful_timeout = 20
# Recycling workers now and then bounds the damage of a slow memory leak; the
# jitter keeps both workers from restarting at the same moment.
max_requests = 1000
max_requests_jitter = 100
accesslog = "-"
errorlog = "-"
