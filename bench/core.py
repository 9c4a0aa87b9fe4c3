"""The hello-world app and the in-process WSGI call that the request benchmarks share."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import Any

from flask import Flask

# Production-like settings, so that the extension has nothing to warn about.
PRODUCTION_CONFIG = {
    "SECRET_KEY": "bench-secret-key-long-enough-to-be-taken-seriously",
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
}


def hello_app(**config: Any) -> Flask:
    app = Flask("bench")
    app.config.update(PRODUCTION_CONFIG, **config)

    @app.get("/")
    def hello() -> str:
        return "Hello, World!"

    return app


def unused_write(data: bytes) -> None:
    """The ``write`` callable ``start_response`` returns (PEP 3333), which Flask never calls."""


def wsgi_caller(
    app: Flask, path: str = "/", *, expect: str = "200", **extra_environ: str
) -> Callable[[], object]:
    """One in-process WSGI call, as a server would make it, without a test client.

    :param expect: the status the call must be answered with.
    """
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": BytesIO(),
        "wsgi.errors": BytesIO(),
        "REMOTE_ADDR": "127.0.0.1",
        **extra_environ,
    }

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], object]:
        assert status.startswith(expect), status
        return unused_write

    def call() -> object:
        body = app.wsgi_app(dict(environ), start_response)
        return b"".join(body)

    return call
